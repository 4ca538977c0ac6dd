"""The read-model contract: stable views in `<schema>_read` for reporting jobs, and the
`leadengine_reader` role that may read them and nothing else.

The tables behind the views belong to the engine and may change (columns added, a table
rebuilt); the views' names and columns are the contract, documented in docs/read-model.md.
Views are re-created in one transaction when their definitions change, so readers never see
a half-made contract. They run with their owner's rights: the reader needs no grant on the
engine's tables, and gets none.
"""

from __future__ import annotations

import hashlib

from psycopg import sql

from engine.postgres.db import Connection, one_row
from engine.postgres.dependents import qualified, replace_view
from engine.projections.registry import TABLES, VIEWS, plain, table_comments, view_comments
from engine.services.application import EVENTS_TABLE

READER_ROLE = "leadengine_reader"

#: Each contract view's query (`{s}`: the engine's schema), from its declaration in
#: engine/projections/registry.py (columns, their meanings, the docs' tables).
CONTRACT: dict[str, str] = {
    name: v.select() for name, v in VIEWS.items() if name != "contract_info"
}

#: Changes whenever a view above changes (a column added, a definition fixed): a reporting job
#: that stores it notices. Read it in `contract_info`.
CONTRACT_VERSION = hashlib.sha256(repr(CONTRACT).encode()).hexdigest()[:16]

#: The log's head for `contract_info`, read with the engine's rights (the reader may not read
#: the event store); 0 before the event store exists (it is made after the migrations).
LOG_HEAD = """
CREATE OR REPLACE FUNCTION {r}.log_head() RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $body$
DECLARE head bigint;
BEGIN
    IF to_regclass({events}) IS NULL THEN RETURN 0; END IF;
    EXECUTE format('SELECT coalesce(max(notification_id), 0) FROM %s', {events}) INTO head;
    RETURN head;
END $body$"""

CONTRACT["contract_info"] = f"""
    SELECT '{CONTRACT_VERSION}'::text AS contract_version, t.name AS projection,
           t.position, h.head AS log_head, greatest(h.head - t.position, 0) AS lag,
           t.updated_at AS last_projected_at
    FROM {{s}}.projection_tracking t CROSS JOIN (SELECT {{r}}.log_head() AS head) h"""

#: What the read schema holds now, the views and every comment: `lead_current`'s comment, its
#: meaning followed by this hash (a start that finds another replaces views and comments).
FINGERPRINT = (
    plain(VIEWS["lead_current"].meaning)
    + " [leadengine read contract "
    + hashlib.sha256(
        repr((CONTRACT, [(t.meaning, t.columns) for t in TABLES.values()], VIEWS)).encode()
    ).hexdigest()[:16]
    + "]"
)


def read_schema(schema: str) -> str:
    return f"{schema}_read"


def ensure_contract(conn: Connection, schema: str) -> bool:
    """Create the contract views if missing, or replace them in place if changed (columns only
    added at the end, so views built on them in other schemas stay; engine/postgres/dependents.py
    refuses a change that would break them); grant them to the reader role.

    Runs inside the caller's transaction. Returns True if it changed anything."""
    read = read_schema(schema)
    row = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{read}.lead_current",)
    ).fetchone()
    if row and row[0] == FINGERPRINT and _all_there(conn, read):
        return False
    s, r = sql.Identifier(schema), sql.Identifier(read)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(r))
    events = sql.Literal(qualified(schema, EVENTS_TABLE))
    conn.execute(sql.SQL(LOG_HEAD).format(r=r, events=events))
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {}.log_head() FROM PUBLIC").format(r))
    for name in CONTRACT:
        query = sql.SQL(CONTRACT[name]).format(s=s, r=r)
        replace_view(conn, schema, qualified(read, name), query)
    comment(conn, schema)
    conn.execute(
        sql.SQL("COMMENT ON VIEW {}.lead_current IS {}").format(r, sql.Literal(FINGERPRINT))
    )
    grant(conn, schema)
    return True


def comment(conn: Connection, schema: str, tables: tuple[str, ...] | None = None) -> None:
    """COMMENT ON every contract view and its columns, and on the engine's read-model tables
    (`tables`: only those, e.g. after a rebuild swapped them in), from their declarations."""
    for name in tables if tables is not None else tuple(TABLES):
        if one_row(conn.execute("SELECT to_regclass(%s)", (qualified(schema, name),)))[0]:
            for statement in table_comments(schema, TABLES[name]):
                conn.execute(statement)
    if tables is None:
        read = read_schema(schema)
        for view in VIEWS.values():
            found = conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attnum > 0 AND NOT attisdropped",
                (qualified(read, view.name),),
            ).fetchall()
            for statement in view_comments(read, view, {name for (name,) in found}):
                conn.execute(statement)


def _all_there(conn: Connection, read: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.views WHERE table_schema = %s AND "
        "table_name = ANY(%s)",
        (read, list(CONTRACT)),
    ).fetchone()
    return bool(row and row[0] == len(CONTRACT))


def role_exists(conn: Connection, role: str = READER_ROLE) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def create_reader_role(conn: Connection, role: str = READER_ROLE) -> bool:
    """Create the group role (NOLOGIN: give people and jobs their own login roles IN it)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('leadengine-reader-role'))")
    if role_exists(conn, role):
        return False
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return True


def grant(conn: Connection, schema: str, role: str = READER_ROLE) -> None:
    """The reader may use the read schema and select its views; nothing else is granted."""
    if not role_exists(conn, role):
        return
    r, who = sql.Identifier(read_schema(schema)), sql.Identifier(role)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(r, who))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(r, who))
    if one_row(
        conn.execute(
            "SELECT to_regprocedure(%s)", (f"{qualified(read_schema(schema), 'log_head')}()",)
        )
    )[0]:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.log_head() TO {}").format(r, who))


def reporting_login_sql(login: str, *, create_login: bool) -> list[sql.Composed]:
    """What gives reporting job `login` the contract to read and a schema of its own (named
    after it, owned by it) to write into: dbt's target. Nothing else: not the engine's schemas,
    not its tables, not `public` (PostgreSQL 15 and later grant no CREATE there)."""
    who, reader = sql.Identifier(login), sql.Identifier(READER_ROLE)
    out = []
    if create_login:
        out.append(sql.SQL("CREATE ROLE {} LOGIN PASSWORD '...'").format(who))
    out += [
        sql.SQL("GRANT {} TO {}").format(reader, who),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(who, who),
    ]
    return out
