"""Versioned, idempotent schema migrations: `leadengine db init` / `leadengine db migrate`.

`<schema>.schema_migrations` lists what has been applied. Each migration runs in its own
transaction with its row, under an advisory lock, so two processes never run one twice and a
crash leaves the database at a whole version. A brand-new schema is migrated on first use (the
demo needs no extra step); an existing schema is never changed implicitly: a process that
finds it behind stops with "run leadengine db migrate". Views (KPI views, the read contract) are
derived objects: made with today's definitions after the last pending migration, and replaced
in place at start when their definitions change (fingerprints; engine/postgres/dependents.py).

The event store's own tables (eventsourcing's) and the key tables are created by the
application itself, idempotently, when it opens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eventsourcing.utils import get_topic
from psycopg import errors, sql

from engine.aggregates.lead import Lead
from engine.domain.errors import LeadEngineError
from engine.postgres.chain import (
    ANCHOR_COLUMNS_6,
    ANCHOR_TABLE,
    ANCHORS_DDL,
    CHAIN_TABLE,
    START_DDL,
    START_TABLE,
)
from engine.postgres.db import Connection, Database, one_row
from engine.postgres.deadletters import DDL as DEAD_LETTERS_DDL
from engine.postgres.dependents import qualified, refuse_if_outside
from engine.postgres.outbox import DDL as OUTBOX_DDL
from engine.postgres.outbox import START_DDL as OUTBOX_START_DDL
from engine.postgres.outbox import START_TABLE as OUTBOX_START_TABLE
from engine.postgres.outbox import TABLE as OUTBOX_TABLE
from engine.postgres.outbox import check_statements, decision_topics, drop_check_trigger
from engine.projections import identity
from engine.projections.kpi_views import VIEWS, create_views
from engine.projections.parking import DDL as PARKED_DDL
from engine.projections.tables import RETRACTED_AT, STATEMENTS
from engine.readmodel import (
    CONTRACT,
    create_reader_role,
    ensure_contract,
    grant,
    read_schema,
    role_exists,
)
from engine.services.application import EVENTS_TABLE

TABLE = "schema_migrations"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Any, str], None]


def _baseline(conn: Connection, schema: str) -> None:
    s = sql.Identifier(schema)
    for statement in STATEMENTS:
        conn.execute(sql.SQL(statement).format(s=s))
    conn.execute(sql.SQL(DEAD_LETTERS_DDL).format(schema=s))
    # No views here: they are derived objects, made with today's definitions once every
    # migration is in (`migrate`); today's may read tables a later migration adds.


def _create_reader_role_if_allowed(conn: Connection) -> None:
    try:
        with conn.transaction():  # a savepoint: a user without CREATEROLE still migrates
            create_reader_role(conn)
    except errors.InsufficientPrivilege:
        pass  # an administrator creates the role later; `db migrate` grants it then


def _read_contract(conn: Connection, schema: str) -> None:
    """The reader role and the read schema; the views in it are derived objects, made with
    today's definitions once every migration is in (`migrate`), when their tables are whole."""
    _create_reader_role_if_allowed(conn)
    conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(read_schema(schema)))
    )
    grant(conn, schema)


def _named_projections(conn: Connection, schema: str) -> None:
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


def _regclass(conn: Connection, schema: str, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    return bool(row and row[0] is not None)


def _first_chained(conn: Connection, schema: str) -> int:
    """A fresh log is chained from its first event; an older one from its first event that
    has a link, or (made before hash chains) from the next notification id."""
    if not _regclass(conn, schema, EVENTS_TABLE):
        return 1
    events = sql.Identifier(schema, EVENTS_TABLE)
    if _regclass(conn, schema, CHAIN_TABLE):
        row = conn.execute(
            sql.SQL(
                "SELECT e.notification_id FROM {e} e WHERE EXISTS (SELECT 1 FROM {c} c "
                "WHERE c.originator_id = e.originator_id "
                "AND c.originator_version = e.originator_version) "
                "ORDER BY e.notification_id LIMIT 1"
            ).format(e=events, c=sql.Identifier(schema, CHAIN_TABLE))
        ).fetchone()
        if row:
            return int(row[0])
    row = one_row(
        conn.execute(sql.SQL("SELECT coalesce(max(notification_id), 0) + 1 FROM {}").format(events))
    )
    return int(row[0])


def _chain_start(conn: Connection, schema: str) -> None:
    """Record from which notification id the log is chained (verify fails any stream after
    it without links); anchors get the columns that cover every event of the log."""
    s, anchors = sql.Identifier(schema), sql.Identifier(ANCHOR_TABLE)
    conn.execute(sql.SQL(ANCHORS_DDL).format(schema=s, table=anchors))
    for column, kind in ANCHOR_COLUMNS_6.items():
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} ADD COLUMN IF NOT EXISTS {} {}").format(
                s, anchors, sql.Identifier(column), sql.SQL(kind)
            )
        )
    conn.execute(sql.SQL(START_DDL).format(schema=s, table=sql.Identifier(START_TABLE)))
    conn.execute(
        sql.SQL("INSERT INTO {} (chained_from) VALUES (%s) ON CONFLICT DO NOTHING").format(
            sql.Identifier(schema, START_TABLE)
        ),
        (_first_chained(conn, schema),),
    )


#: (table, column, type): amounts the contract accepts (< 10^15, 2 decimals) stored exactly;
#: sums of them (a lead's won deals, attributed revenue) wide enough for any log
WIDER_AMOUNTS = (
    ("lead_milestones", "amount", "numeric(17,2)"),
    ("campaign_costs", "amount", "numeric(17,2)"),
    ("lead_state", "won_amount", "numeric(32,2)"),
    ("attribution_credits", "credit", "numeric(32,4)"),
    ("attribution_credits", "total", "numeric(32,4)"),
)


def _wider_amounts(conn: Connection, schema: str) -> None:
    """Widen the money columns to what the contract accepts. The engine's views over them are
    dropped first (PostgreSQL refuses to retype a column a view reads) and re-created after;
    a view of someone else's over them stops the migration, named
    (engine/postgres/dependents.py)."""
    s, r = sql.Identifier(schema), sql.Identifier(read_schema(schema))
    tables = sorted({qualified(schema, table) for table, _, _ in WIDER_AMOUNTS})
    present = [t for t in tables if one_row(conn.execute("SELECT to_regclass(%s)", (t,)))[0]]
    refuse_if_outside(conn, schema, present, "migration 4 must retype money columns")
    for name in CONTRACT:
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}.{}").format(r, sql.Identifier(name)))
    for name in reversed(VIEWS):
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}.{}").format(s, sql.Identifier(name)))
    for table, column, kind in WIDER_AMOUNTS:
        conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
                sql.Identifier(schema, table), sql.Identifier(column), sql.SQL(kind)
            )
        )
    # the engine's views and the contract's come back at the end of `migrate`, over the tables
    # as the last migration leaves them (a view made here could read a column a later one adds)


#: history tables keyed by the events they hold, and their keys with the CloudEvent source
SOURCE_KEYED = {
    "lead_touchpoints": ("lead_id", "source", "event_id"),
    "lead_milestones": ("lead_id", "source", "event_id"),
    "campaign_costs": ("campaign", "source", "event_id"),
}


def _source_in_keys(conn: Connection, schema: str) -> None:
    """Event identity is (source, id): two events that share an id from two sources both
    belong in the read model. Rows projected before hold source '' (a rebuild fills it in)."""
    for table, key in SOURCE_KEYED.items():
        t = sql.Identifier(schema, table)
        pkey = sql.Identifier(f"{table}_pkey")
        conn.execute(
            sql.SQL(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT ''"
            ).format(t)
        )
        conn.execute(
            sql.SQL(
                "ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {k}, "
                "ADD CONSTRAINT {k} PRIMARY KEY ({c})"
            ).format(t=t, k=pkey, c=sql.SQL(", ").join(map(sql.Identifier, key)))
        )


def _lead_id_scheme(conn: Connection, schema: str) -> None:
    """Lead ids became a keyed hash of the key (engine/domain/leadids.py). A schema that already has
    leads keeps the uuid5 ids its streams are named by (re-keying would break every hash chain:
    those ids stay guessable); a schema without leads yet gets keyed ids."""
    from eventsourcing.utils import get_topic

    from engine.aggregates.lead import Lead
    from engine.domain.leadids import KEYED, SCHEME_TABLE, UUID5
    from engine.services.application import EVENTS_TABLE

    t = sql.Identifier(schema, SCHEME_TABLE)
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1), scheme text NOT "
            "NULL CHECK (scheme IN ('keyed', 'uuid5')), recorded_at timestamptz NOT NULL "
            "DEFAULT now())"
        ).format(t)
    )
    events = conn.execute("SELECT to_regclass(%s)", (f"{schema}.{EVENTS_TABLE}",)).fetchone()
    had_leads = False
    if events and events[0] is not None:
        row = conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE topic = %s)").format(
                sql.Identifier(schema, EVENTS_TABLE)
            ),
            (get_topic(Lead.Started),),
        ).fetchone()
        had_leads = bool(row and row[0])
    conn.execute(
        sql.SQL("INSERT INTO {} (id, scheme) VALUES (1, %s) ON CONFLICT (id) DO NOTHING").format(t),
        (UUID5 if had_leads else KEYED,),
    )


def _retracted_moves(conn: Connection, schema: str) -> None:
    """Stage history keeps the moves a late fact took back, with when (engine/domain/moments.py)."""
    for statement in RETRACTED_AT:
        conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))


def _parked(conn: Connection, schema: str) -> None:
    """Leads a projection set aside instead of stopping (engine/projections/parking.py)."""
    conn.execute(sql.SQL(PARKED_DDL).format(s=sql.Identifier(schema)))


def _credit_currency(conn: Connection, schema: str) -> None:
    """Saved revenue credits say their currency (a run in EUR replaces one in USD whole)."""
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS currency text").format(
            sql.Identifier(schema, "attribution_credits")
        )
    )


#: engine/kafka/relay.py: each outbound topic's position, moved only after the broker acknowledged
RELAY_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.relay_tracking (
    topic text PRIMARY KEY,
    position bigint NOT NULL,
    batch_events integer NOT NULL DEFAULT 0,
    batch_published integer NOT NULL DEFAULT 0,
    batch_seconds double precision NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


def _relay_tracking(conn: Connection, schema: str) -> None:
    conn.execute(sql.SQL(RELAY_DDL).format(schema=sql.Identifier(schema)))


def _outbox(conn: Connection, schema: str) -> None:
    """The transactional outbox (engine/postgres/outbox.py): complete from the next event on (older
    decisions are relayed from the log); the relay keeps each partition's offset with its
    position, to publish nothing twice after a crash between the broker's ack and the commit."""
    s = sql.Identifier(schema)
    for ddl in (*OUTBOX_DDL, OUTBOX_START_DDL):
        conn.execute(sql.SQL(ddl).format(schema=s))
    if _regclass(conn, schema, EVENTS_TABLE):  # no writer may slip an event in between
        conn.execute(
            sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(schema, EVENTS_TABLE))
        )
    conn.execute(
        sql.SQL("INSERT INTO {} (complete_from) VALUES (%s) ON CONFLICT DO NOTHING").format(
            sql.Identifier(schema, OUTBOX_START_TABLE)
        ),
        (_next_notification_id(conn, schema),),
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS offsets jsonb").format(
            sql.Identifier(schema, "relay_tracking")
        )
    )
    if _regclass(conn, schema, EVENTS_TABLE):  # else the recorder makes it with the table
        for statement in check_statements(schema, EVENTS_TABLE, decision_topics()):
            conn.execute(statement)


def _next_notification_id(conn: Connection, schema: str) -> int:
    if not _regclass(conn, schema, EVENTS_TABLE):
        return 1
    row = one_row(
        conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) + 1 FROM {}").format(
                sql.Identifier(schema, EVENTS_TABLE)
            )
        )
    )
    return int(row[0])


def _recorded_at(conn: Connection, schema: str) -> None:
    """Current-state rows say when the engine recorded the lead's latest event they reflect.
    Rows projected before hold null until the lead changes or `projections rebuild leads`."""
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS recorded_at timestamptz").format(
            sql.Identifier(schema, "lead_state")
        )
    )


def _declared(conn: Connection, schema: str, tables: Iterable[str]) -> None:
    """Make `tables` as engine/projections/registry.py declares them today (missing columns
    and indexes added to an older table)."""
    from engine.projections.registry import TABLES as DECLARED

    for table in tables:
        for statement in DECLARED[table].ddl():
            conn.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))


def _remake_outbox_check(conn: Connection, schema: str) -> bool:
    """Make the outbox completeness trigger again with today's decision topics (its list is
    fixed when it is made). False on a fresh store: the recorder makes it with today's list."""
    if not _regclass(conn, schema, EVENTS_TABLE):
        return False
    events = sql.Identifier(schema, EVENTS_TABLE)
    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events))
    conn.execute(drop_check_trigger(schema, EVENTS_TABLE))
    for statement in check_statements(schema, EVENTS_TABLE, decision_topics()):
        conn.execute(statement)
    return True


def _rules_applied(conn: Connection, schema: str) -> None:
    """The rules each projector applied, from where in the log (`<schema>_read.rules_in_force`)."""
    _declared(conn, schema, ["rules_applied"])


def _identity(conn: Connection, schema: str) -> None:
    """Identity links, merges and unmerges (engine/projections/identity.py), projected with
    `history`; no older event makes one, so nothing needs a rebuild."""
    identity.create(conn, schema)


def _subject_wins(conn: Connection, schema: str) -> None:
    """`identity_links.subject_wins` (docs/identity.md#duplicates): an engine merge recorded on
    the older key's stream, when it arrived after the younger one, names the younger as the
    duplicate. No event recorded before it has the flag, so false is every old row's value."""
    conn.execute(
        sql.SQL(
            "ALTER TABLE {} ADD COLUMN IF NOT EXISTS subject_wins boolean NOT NULL DEFAULT false"
        ).format(sql.Identifier(schema, identity.TABLE))
    )


def _duplicates(conn: Connection, schema: str) -> None:
    """Duplicate detection (docs/identity.md#duplicates): the hash index and the decisions."""
    from engine.postgres import duplicates

    duplicates.create(conn, schema)


def _accounts(conn: Connection, schema: str) -> None:
    """Account tables (docs/accounts.md): filled by `projections rebuild leads`, then kept.
    Today's declarations: migration 21 adds the buying-group table and columns the same way
    (a store projected before needs `projections rebuild leads` to fill them)."""
    from engine.projections.registry import ACCOUNT_TABLES

    _declared(conn, schema, ACCOUNT_TABLES)


def _directory(conn: Connection, schema: str) -> None:
    """The write-side account directory (docs/accounts.md#account-owner-routing), filled from
    `account_state` for accounts projected before."""
    from engine.postgres import account_directory

    account_directory.create(conn, schema)


def _rounds_windows(conn: Connection, schema: str) -> None:
    """SLA per routing round (filled by `projections rebuild leads`, then kept) and attribution
    credits per window (filled by `leadengine projections refresh-attribution`)."""
    _declared(conn, schema, ["lead_sla_rounds", "attribution_windows"])


def _identity_outbound(conn: Connection, schema: str) -> None:
    """Identity decisions (`Lead.Linked`) are outbound too (`lead.identity_decided`). The
    outbox trigger's topic list is fixed when it is made: make it again with today's list.
    Identity decisions recorded since migration 15 have no outbox rows (the writer did not
    know them as decisions); if there are any, the outbox counts as complete only from the
    next event on, so the relay decodes them (and everything from there) from the log. A
    topic already relayed past them does not go back: `relay --from-start` to a new topic
    publishes them (docs/integration.md)."""
    if not _remake_outbox_check(conn, schema):
        return
    events = sql.Identifier(schema, EVENTS_TABLE)
    start = sql.Identifier(schema, OUTBOX_START_TABLE)
    row = conn.execute(sql.SQL("SELECT complete_from FROM {}").format(start)).fetchone()
    missing = conn.execute(  # a range of the primary key: the events since migration 15
        sql.SQL(
            "SELECT 1 FROM {e} e WHERE e.notification_id >= %s AND e.topic = %s "
            "AND NOT EXISTS (SELECT 1 FROM {o} o WHERE o.notification_id = e.notification_id) "
            "LIMIT 1"
        ).format(e=events, o=sql.Identifier(schema, OUTBOX_TABLE)),
        (int(row[0]) if row else 1, get_topic(Lead.Linked)),  # no row: complete from 1
    ).fetchone()
    if missing:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (complete_from) VALUES (%s) ON CONFLICT (one) DO UPDATE "
                "SET complete_from = excluded.complete_from, recorded_at = now()"
            ).format(start),
            (_next_notification_id(conn, schema),),
        )


def _account_decisions(conn: Connection, schema: str) -> None:
    """MQAs and matches are decisions recorded on the Account aggregate (`Account.Qualified`,
    `Account.MemberDecided`; outbound `account.qualified`, `account.member_decided`;
    docs/accounts.md): `account_state.mqa` keeps the recorded MQA, and the outbox trigger is
    made again with today's decision topics. MQAs a projector took before
    are recorded on their accounts by the projector's next settling (their moment kept); a
    rebuild before that shows only recorded ones."""
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS mqa jsonb").format(
            sql.Identifier(schema, "account_state")
        )
    )
    _remake_outbox_check(conn, schema)


def _event_identities(conn: Connection, schema: str) -> None:
    """The event identity index (engine/postgres/identities.py): (source, id) -> the lead that
    recorded it, filled from the stored facts, so a pair is stored on one lead only."""
    from engine.postgres import identities

    identities.create(conn, schema, EVENTS_TABLE, get_topic(Lead.FactRecorded))


def _provisional_index(conn: Connection, schema: str) -> None:
    """account_directory: a partial index of the provisional accounts (their lookups by domain
    read those rows only, not every CRM account)."""
    from engine.postgres import account_directory

    conn.execute(sql.SQL(account_directory.PROVISIONAL_INDEX).format(s=sql.Identifier(schema)))


def _snapshots(conn: Connection, schema: str) -> None:
    """As-of snapshots (engine/postgres/snapshots.py): an opinion, filled by as-of reads."""
    from engine.postgres import snapshots

    conn.execute(snapshots.ddl(schema))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "read-model tables, KPI views, dead letters", _baseline),
    Migration(
        2, "read contract: <schema>_read views and the leadengine_reader role", _read_contract
    ),
    Migration(
        3, "projections leads/touchpoints/history/costs, each with its position", _named_projections
    ),
    Migration(4, "amounts up to 10^15 with 2 decimals stored exactly", _wider_amounts),
    Migration(5, "parked leads: what a projection set aside, with the reason", _parked),
    Migration(6, "hash chains: chain_start, anchors that cover the whole log", _chain_start),
    Migration(7, "lead ids: keyed hash of the key (uuid5 kept where leads exist)", _lead_id_scheme),
    Migration(
        8, "event identity: source in the keys of touchpoints, milestones, costs", _source_in_keys
    ),
    Migration(9, "stage history: moves late facts took back, kept retracted", _retracted_moves),
    Migration(10, "attribution_credits.currency: the currency of saved revenue", _credit_currency),
    Migration(11, "current-state rows: recorded_at of the lead's latest event", _recorded_at),
    Migration(12, "relay_tracking: each outbound topic's position in the log", _relay_tracking),
    Migration(
        13, "rules_applied: the rules in force, from which position and when", _rules_applied
    ),
    Migration(14, "identity_links and the lead_person view: who is one person", _identity),
    Migration(15, "outbox: each decision's outbound record, written with its event", _outbox),
    Migration(17, "accounts: account_state, account_signals, members, scores", _accounts),
    Migration(18, "outbox: identity decisions are outbound too", _identity_outbound),
    Migration(
        19,
        "lead_sla_rounds and attribution_windows: SLA per round, credits by window",
        _rounds_windows,
    ),
    Migration(20, "duplicates: keyed-hash index, decisions duplicate rules took", _duplicates),
    Migration(21, "accounts: buying groups (account_buying_group, coverage, persona)", _accounts),
    Migration(22, "accounts: MQA and match decisions recorded, outbound", _account_decisions),
    Migration(23, "identity_links.subject_wins: an older key's engine merge wins", _subject_wins),
    Migration(24, "accounts: account_directory, for owner routing by domain and name", _directory),
    Migration(25, "lead_snapshots: as-of snapshots of leads, sealed, droppable", _snapshots),
    Migration(27, "event_identities: each fact's (source, id) on one lead only", _event_identities),
    Migration(34, "account_directory: provisional accounts indexed apart", _provisional_index),
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
        applied: set[int] = set()
        if exists and exists[0] is not None:
            rows = conn.execute(
                sql.SQL("SELECT version FROM {}").format(sql.Identifier(db.schema, TABLE))
            ).fetchall()
            applied = {row[0] for row in rows}
            current = max(applied) if applied else None
        legacy_row = conn.execute("SELECT to_regclass(%s)", (f"{db.schema}.lead_state",)).fetchone()
    legacy = current is None and bool(legacy_row and legacy_row[0] is not None)
    # every version not applied yet, not only those above the highest: a schema migrated by a
    # build that lacked a lower-numbered migration still gets it
    pending = tuple(m for m in MIGRATIONS if m.version not in applied)
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
        with conn.transaction():  # derived objects, with today's definitions over today's tables
            create_views(conn, db.schema)
            ensure_contract(conn, db.schema)
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
