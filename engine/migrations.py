"""Versioned, idempotent schema migrations: `leadengine db init` / `leadengine db migrate`.

`<schema>.schema_migrations` lists what has been applied. Each migration runs in its own
transaction with its row, under an advisory lock, so two processes never run one twice and a
crash leaves the database at a whole version. A brand-new schema is migrated on first use (the
demo needs no extra step); an existing schema is never changed implicitly: a process that
finds it behind stops with "run leadengine db migrate". Views (KPI views, the read contract) are
derived objects: they are re-created at start when their definitions change (fingerprints).

The event store's own tables (eventsourcing's) and the key tables are created by the
application itself, idempotently, when it opens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import errors, sql

from engine.analytics.views import create_views
from engine.db import Database
from engine.deadletters import DDL as DEAD_LETTERS_DDL
from engine.errors import LeadEngineError
from engine.projections.parking import DDL as PARKED_DDL
from engine.projections.tables import STATEMENTS
from engine.readmodel import create_reader_role, ensure_contract, grant, role_exists

TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Any, str], None]


def _baseline(conn: Any, schema: str) -> None:
    s = sql.Identifier(schema)
    for statement in STATEMENTS:
        conn.execute(sql.SQL(statement).format(s=s))
    conn.execute(sql.SQL(DEAD_LETTERS_DDL).format(schema=s))
    create_views(conn, schema)


def _create_reader_role_if_allowed(conn: Any) -> None:
    try:
        with conn.transaction():  # a savepoint: a user without CREATEROLE still migrates
            create_reader_role(conn)
    except errors.InsufficientPrivilege:
        pass  # an administrator creates the role later; `db migrate` grants it then


def _read_contract(conn: Any, schema: str) -> None:
    _create_reader_role_if_allowed(conn)
    ensure_contract(conn, schema)
    grant(conn, schema)


def _named_projections(conn: Any, schema: str) -> None:
    """The read model became four projections, each with its own position: every one starts
    where the single `read_model` projection was; the last batch's size and time are kept
    for `status` (events/s)."""
    from engine.projections.projector import LEGACY_NAME, PROJECTIONS

    t = sql.Identifier(schema, "projection_tracking")
    for column, kind in (("batch_events", "int"), ("batch_seconds", "double precision")):
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {} NOT NULL DEFAULT 0").format(
                t, sql.Identifier(column), sql.SQL(kind)
            )
        )
    for name in PROJECTIONS:
        conn.execute(
            sql.SQL(
                "INSERT INTO {t} (name, position) SELECT %s, position FROM {t} WHERE name = %s "
                "ON CONFLICT (name) DO NOTHING"
            ).format(t=t),
            (name, LEGACY_NAME),
        )
    conn.execute(sql.SQL("DELETE FROM {} WHERE name = %s").format(t), (LEGACY_NAME,))


def _parked(conn: Any, schema: str) -> None:
    """Leads a projection set aside instead of stopping (engine/projections/parking.py)."""
    conn.execute(sql.SQL(PARKED_DDL).format(s=sql.Identifier(schema)))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "read-model tables, KPI views, dead letters", _baseline),
    Migration(
        2, "read contract: <schema>_read views and the leadengine_reader role", _read_contract
    ),
    Migration(
        3, "projections leads/touchpoints/history/costs, each with its position", _named_projections
    ),
    Migration(5, "parked leads: what a projection set aside, with the reason", _parked),
)
LATEST = MIGRATIONS[-1].version


@dataclass(frozen=True)
class Status:
    current: int | None  # None: no migration ever recorded
    legacy: bool  # tables made before versioned migrations existed
    pending: tuple[Migration, ...]

    @property
    def fresh(self) -> bool:
        return self.current is None and not self.legacy


def status(db: Database) -> Status:
    with db.connect() as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"{db.schema}.{TABLE}",)).fetchone()
        current = None
        if exists and exists[0] is not None:
            row = conn.execute(
                sql.SQL("SELECT max(version) FROM {}").format(sql.Identifier(db.schema, TABLE))
            ).fetchone()
            current = row[0] if row else None
        legacy_row = conn.execute("SELECT to_regclass(%s)", (f"{db.schema}.lead_state",)).fetchone()
    legacy = current is None and bool(legacy_row and legacy_row[0] is not None)
    pending = tuple(m for m in MIGRATIONS if current is None or m.version > current)
    return Status(current, legacy, pending)


def migrate(db: Database, *, dry_run: bool = False) -> list[Migration]:
    """Apply the pending migrations in order (the caller holds `db.init_lock`)."""
    pending = list(status(db).pending)
    if dry_run or not pending:
        return pending if dry_run else []
    s = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version int PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(db.schema, TABLE))
        )
        for migration in pending:
            with conn.transaction():
                migration.apply(conn, db.schema)
                conn.execute(
                    sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                        sql.Identifier(db.schema, TABLE)
                    ),
                    (migration.version, migration.name),
                )
    return pending


def ensure_reader(db: Database) -> bool:
    """Create the reader role if this user may, and grant it the read schema. True if it exists."""
    with db.connect() as conn, conn.transaction():
        _create_reader_role_if_allowed(conn)
        grant(conn, db.schema)
        return role_exists(conn)


def check(db: Database) -> None:
    """At start: migrate a brand-new schema; refuse one that is behind; refresh the views."""
    st = status(db)
    if st.fresh:
        migrate(db)
    elif st.pending:
        at = "unversioned (made before migrations)" if st.legacy else f"version {st.current}"
        raise LeadEngineError(
            f"schema {db.schema} is at {at}; this leadengine needs version {LATEST}: run "
            f"`leadengine db migrate` (pending: "
            + ", ".join(f"{m.version} {m.name}" for m in st.pending)
            + ")"
        )
    elif st.current is not None and st.current > LATEST:
        raise LeadEngineError(
            f"schema {db.schema} is at version {st.current}, newer than this leadengine "
            f"({LATEST}): upgrade leadengine"
        )
    with db.connect() as conn, conn.transaction():
        create_views(conn, db.schema)
        ensure_contract(conn, db.schema)
