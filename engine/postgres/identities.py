"""The event identity index: which lead recorded each upstream fact's (source, id).

A lead's own stream knows the pairs it recorded (`seen`), so a redelivery to the same lead is a
duplicate or a conflict there. This index makes the rule hold across leads: a pair recorded on
one lead and sent again under another key is compared with the fact stored on the first lead
(the same content: a duplicate; other content: a conflict, dead-lettered), never stored twice.

One row per pair: `(source, event_id) -> lead_id`. No content digest is kept: the content is
compared with the stored fact itself (only when a pair comes back on another lead), which names
the fields that differ and needs nothing personal outside the lead's sealed stream (a digest of
an e-mail would outlive `forget`). The application reads a batch's pairs in one query before it
applies the batch, and the recorder writes the batch's new pairs in the save's transaction,
after the events table's lock (engine/postgres/outbox.py): two consumers storing the same pair
on two leads at once collide on the primary key, the loser's save fails as a version race does
(eventsourcing's IntegrityError), and its batch is redone on fresh reads, where it sees the pair.

Migration 27 makes the table and fills it from the stored `Lead.FactRecorded` events (source and
id are stored in clear); where the log already holds one pair on several leads (recorded before
the index), the first recorded keeps the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from engine.postgres import binarray

TABLE = "event_identities"
#: made by migration 27 (and, idempotently, by the recorder on a fresh schema)
DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.event_identities ("
    "source text NOT NULL, event_id text NOT NULL, lead_id uuid NOT NULL, "
    "PRIMARY KEY (source, event_id))"
)

Pair = tuple[str, str]
#: (source, event_id, lead id): a pair a batch recorded
Row = tuple[str, str, UUID]


class EventIdentities:
    """The index in memory (the in-memory store's)."""

    def __init__(self) -> None:
        self.rows: dict[Pair, UUID] = {}

    def owners(self, pairs: Iterable[Pair]) -> dict[Pair, UUID]:
        """The lead that recorded each of `pairs` (a pair none recorded is absent)."""
        rows = self.rows
        return {p: rows[p] for p in pairs if p in rows}

    def put(self, rows: Sequence[Row]) -> None:
        """Add a saved batch's rows (the in-memory store; PostgreSQL wrote them in the save)."""
        for source, event_id, lead_id in rows:
            self.rows.setdefault((source, event_id), lead_id)


class PostgresEventIdentities(EventIdentities):
    """The index in `<schema>.event_identities`."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__()
        self.datastore = datastore

    def owners(self, pairs: Iterable[Pair]) -> dict[Pair, UUID]:
        wanted = sorted(set(pairs))
        if not wanted:
            return {}
        statement = sql.SQL(
            "SELECT i.source, i.event_id, i.lead_id FROM {} i "
            "JOIN unnest(%b::text[], %b::text[]) AS w(s, e) "
            "ON i.source = w.s AND i.event_id = w.e"
        ).format(sql.Identifier(self.datastore.schema, TABLE))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            columns = (binarray.texts(s for s, _ in wanted), binarray.texts(e for _, e in wanted))
            cur.execute(statement, columns, prepare=True)
            return {(s, e): _uuid(i) for s, e, i in cur.fetchall()}

    def put(self, rows: Sequence[Row]) -> None:  # written in the save's transaction (`write`)
        return None


def write(curs: Cursor[Any], schema: str, rows: Sequence[Row]) -> None:
    """Insert a batch's rows on the recorder's cursor, in its transaction: one statement. A
    pair another writer stored meanwhile violates the primary key and fails the save."""
    curs.execute(
        sql.SQL(
            "INSERT INTO {} (source, event_id, lead_id) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::uuid[])"
        ).format(sql.Identifier(schema, TABLE)),
        (
            binarray.texts(r[0] for r in rows),
            binarray.texts(r[1] for r in rows),
            [r[2] for r in rows],
        ),
        prepare=True,
    )


def create(conn: Any, schema: str, events: str, fact_topic: str) -> None:
    """Make the table and fill it from the stored facts (migration 27): the first lead that
    recorded a pair keeps it. The events table may not exist yet (a fresh schema)."""
    conn.execute(sql.SQL(DDL).format(schema=sql.Identifier(schema)))
    exists = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{events}"',)).fetchone()
    if not exists or exists[0] is None:
        return
    conn.execute(
        sql.SQL(
            "INSERT INTO {i} (source, event_id, lead_id) "
            "SELECT f ->> 'source', f ->> 'event_id', originator_id FROM ("
            "SELECT convert_from(state, 'UTF8')::jsonb AS f, originator_id, notification_id "
            "FROM {e} WHERE topic = %s) s "
            "WHERE f ->> 'source' IS NOT NULL AND f ->> 'event_id' IS NOT NULL "
            "ORDER BY notification_id ON CONFLICT DO NOTHING"
        ).format(i=sql.Identifier(schema, TABLE), e=sql.Identifier(schema, events)),
        (fact_topic,),
    )


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
