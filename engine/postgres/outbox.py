"""The transactional outbox: each decision's outbound record, written with the event itself.

The application builds the CloudEvent of every decision it saves (engine/domain/decisions.py)
and hands the records to the event recorder (`outbox=` in the save's kwargs); the recorder
inserts them in the transaction that stores the events, keyed by each event's notification id,
while it holds the events table's lock. So a decision is in the outbox exactly when it is in
the log, in log order, and the relay reads finished bytes instead of decoding and folding the
log.

Events recorded before migration 15 have no outbox rows: `outbox_start` says from which
notification id the outbox is complete; the relay takes its older path below it
(engine/kafka/relay.py). `forget` rewrites the lead's rows to its pseudonym in the transaction that
records `Erased`, so no key of a forgotten lead stays here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg import Cursor, sql
from psycopg.rows import DictRow, tuple_row

from engine.domain.decisions import ACCOUNT_TYPES, TYPES
from engine.postgres import account_directory, binarray, identities
from engine.postgres.chain import ChainedProcessRecorder
from engine.postgres.db import Connection

TABLE = "outbox"
START_TABLE = "outbox_start"
#: made by migration 15 (and, idempotently, by the recorder on a fresh schema)
DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.outbox ("
    "notification_id bigint PRIMARY KEY, lead_id uuid NOT NULL, version bigint NOT NULL, "
    "type text NOT NULL, key text NOT NULL, value text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outbox_lead_id ON {schema}.outbox (lead_id)",
)
#: one row: every decision with notification_id >= complete_from has its outbox row
START_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.outbox_start ("
    "one boolean PRIMARY KEY DEFAULT true CHECK (one), complete_from bigint NOT NULL, "
    "recorded_at timestamptz NOT NULL DEFAULT now())"
)


#: a decision event committed without its outbox row fails its transaction (a writer older
#: than migration 15 during a rolling upgrade: it stops, loudly, instead of its decisions
#: never reaching the topic; not a transient error, so nobody waits it out); checked at
#: commit, after the recorder wrote the records
CHECK_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.outbox_complete() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {schema}.outbox WHERE notification_id = NEW.notification_id)
    THEN
        RAISE EXCEPTION 'decision % of % (version %) recorded without its outbox row: this '
            'writer predates migration 15 (the transactional outbox), or 18 for an identity '
            'decision; run the new version',
            NEW.topic, NEW.originator_id, NEW.originator_version;
    END IF;
    RETURN NULL;
END
$f$
"""
CHECK_TRIGGER = """
DO $d$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'outbox_complete'
                   AND tgrelid = {events_literal}::regclass) THEN
        CREATE CONSTRAINT TRIGGER outbox_complete AFTER INSERT ON {events}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (NEW.topic = ANY({topics})) EXECUTE FUNCTION {schema}.outbox_complete();
    END IF;
END $d$
"""


def check_statements(schema: str, events: str, topics: list[str]) -> list[sql.Composed]:
    """The function and the trigger that keep the outbox complete (idempotent)."""
    table = sql.Identifier(schema, events)
    return [
        sql.SQL(CHECK_FUNCTION).format(schema=sql.Identifier(schema)),
        sql.SQL(CHECK_TRIGGER).format(
            events_literal=sql.Literal(table.as_string(None)),
            events=table,
            topics=sql.Literal(topics),
            schema=sql.Identifier(schema),
        ),
    ]


def drop_check_trigger(schema: str, events: str) -> sql.Composed:
    """Drop the trigger, to make it again with today's decision topics (migration 18)."""
    return sql.SQL("DROP TRIGGER IF EXISTS outbox_complete ON {}").format(
        sql.Identifier(schema, events)
    )


@dataclass(frozen=True, slots=True)
class Record:
    """One decision's outbound record, before its notification id is known."""

    lead_id: UUID
    version: int
    type: str
    key: str
    value: str  # the CloudEvent, encoded by engine.domain.decisions.encode


@dataclass(frozen=True, slots=True)
class Erasure:
    """A lead forgotten in this save: its earlier rows move to `pseudonym`."""

    lead_id: UUID
    pseudonym: str


#: `subject` in an encoded CloudEvent (engine.domain.decisions.encode): its first match is the top
#: level's (specversion, id, source and type come first and never hold that text)
SUBJECT = r'"subject":"(?:[^"\\]|\\.)*"'


def subject_field(key: str) -> str:
    """How `subject` reads in an encoded CloudEvent."""
    return '"subject":' + json.dumps(key)


def insert(
    curs: Cursor[Any], schema: str, events: str, records: list[Record], erasures: list[Erasure]
) -> None:
    """Write `records`, each at its stored event's notification id (looked up in the
    `events` table by its primary key, not taken from the order of RETURNING), and rewrite
    the rows of the leads in `erasures` to their pseudonyms; on the recorder's cursor, in
    its transaction. One statement for all the records, their columns sent as binary arrays
    (the lean write path, engine/postgres/lean.py); a record whose event is not in the table
    gets no notification id and fails the transaction (the primary key), as before."""
    if records:
        curs.execute(
            sql.SQL(
                "INSERT INTO {o} (notification_id, lead_id, version, type, key, value) "
                "SELECT e.notification_id, r.l, r.v, r.t, r.k, r.x "
                "FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::text[], %b::text[]) "
                "WITH ORDINALITY AS r(l, v, t, k, x, n) "
                "LEFT JOIN {e} e ON e.originator_id = r.l AND e.originator_version = r.v "
                "ORDER BY r.n"
            ).format(o=sql.Identifier(schema, TABLE), e=sql.Identifier(schema, events)),
            (
                [r.lead_id for r in records],
                binarray.int8s(r.version for r in records),
                binarray.texts(r.type for r in records),
                binarray.texts(r.key for r in records),
                binarray.texts(r.value for r in records),
            ),
            prepare=True,
        )
    for e in erasures:  # regexp_replace without 'g': the first match only
        curs.execute(
            sql.SQL(
                "UPDATE {} SET key = %s, value = regexp_replace(value, %s, %s) "
                "WHERE lead_id = %s AND key <> %s"
            ).format(sql.Identifier(schema, TABLE)),
            (e.pseudonym, SUBJECT, _literal(subject_field(e.pseudonym)), e.lead_id, e.pseudonym),
        )


def _literal(replacement: str) -> str:
    """`replacement` for regexp_replace, which reads backslashes and & specially."""
    return replacement.replace("\\", "\\\\").replace("&", "\\&")


def complete_from(conn: Connection, schema: str) -> int:
    """The notification id from which every decision has its outbox row (1: the whole log)."""
    with conn.cursor(row_factory=tuple_row) as cur:  # any connection: eventsourcing's too
        row = cur.execute(
            sql.SQL("SELECT complete_from FROM {}").format(sql.Identifier(schema, START_TABLE))
        ).fetchone()
    return int(row[0]) if row else 1


def decision_topics() -> list[str]:
    """The stored topics of the decision events (engine/domain/decisions.py), the accounts'
    too (migration 22)."""
    return sorted(get_topic(cls) for cls in (*TYPES, *ACCOUNT_TYPES))


def routed_leads(conn: Connection, schema: str, upto: int) -> set[UUID]:
    """The leads with a `lead.routed` record at or below notification id `upto`."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            sql.SQL(
                "SELECT DISTINCT lead_id FROM {} "
                "WHERE type = 'lead.routed' AND notification_id <= %s"
            ).format(sql.Identifier(schema, TABLE)),
            (upto,),
        ).fetchall()
    return {UUID(str(r[0])) for r in rows}


class OutboxRecorder(ChainedProcessRecorder):
    """The chained process recorder, plus the outbox rows of the decisions it stores (the
    save's `outbox` and `outbox_erasures` kwargs), in the same transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = sql.Identifier(datastore.schema)
        for ddl in (*DDL, START_DDL, identities.DDL):
            self.sql_create_statements.append(sql.SQL(ddl).format(schema=schema))
        self.sql_create_statements.extend(
            check_statements(datastore.schema, self.events_table_name, decision_topics())
        )

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        records: list[Record] = kwargs.get("outbox") or []
        erasures: list[Erasure] = kwargs.get("outbox_erasures") or []
        if records or erasures:
            insert(curs, self.datastore.schema, self.events_table_name, records, erasures)
        pairs = kwargs.get("event_identities")
        if pairs:  # each new fact's (source, id), after the table lock (identities.py)
            identities.write(curs, self.datastore.schema, pairs)
        directory = kwargs.get("account_directory")
        if directory:  # accounts' profiles for routing, with their updates (account_directory)
            account_directory.write(curs, self.datastore.schema, directory)
        return ids
