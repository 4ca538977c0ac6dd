"""Tamper evidence: every stored event is hashed into a chain per aggregate, in the same
transaction that stores it.

entry(n) = sha256(entry(n-1) || digest(n)), digest(n) = sha256(originator id || version ||
topic || 0x00 || stored state bytes). The chain covers the bytes as stored (after encryption),
so a lead whose key was shredded still verifies. `event_chain` rows are written by the event
recorder itself (`ChainedProcessRecorder`), so no code path can store an event without its
link. Anchors (`chain_anchors`) hash every link up to a notification id and count every event
of the log; kept elsewhere too (a file), they make a consistent rewrite of a whole chain, a
forged stream and a truncated log detectable. `chain_start` records from which notification id
the schema is chained: every event from there on must have its link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from engine.postgres.contention import SET_LOCK_TIMEOUT, XACT_LOCK
from engine.postgres.db import Database

CHAIN_TABLE = "event_chain"
ANCHOR_TABLE = "chain_anchors"
START_TABLE = "chain_start"
#: the anchor columns added by migration 6 (nullable: older anchors lack them)
ANCHOR_COLUMNS_6 = {"log_events": "bigint", "chained_from": "bigint", "heads": "bytea"}
ANCHORS_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
    "upto_notification_id bigint PRIMARY KEY, events bigint NOT NULL, "
    "anchor bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
    + ", ".join(f"{name} {kind}" for name, kind in ANCHOR_COLUMNS_6.items())
    + ")"
)
#: one row: every event with notification_id >= chained_from has a link (earlier ones, with
#: positive ids, were recorded before hash chains existed)
START_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
    "one boolean PRIMARY KEY DEFAULT true CHECK (one), chained_from bigint NOT NULL, "
    "recorded_at timestamptz NOT NULL DEFAULT now())"
)
TOPIC = "engine.postgres.chain:ChainedProcessRecorder"


def digest(originator_id: UUID, version: int, topic: str, state: bytes) -> bytes:
    h = hashlib.sha256()
    h.update(originator_id.bytes)
    h.update(int(version).to_bytes(8, "big"))
    h.update(topic.encode())
    h.update(b"\x00")
    h.update(state)
    return h.digest()


def link(previous: bytes, event_digest: bytes) -> bytes:
    return hashlib.sha256(previous + event_digest).digest()


class ChainedProcessRecorder(PostgresProcessRecorder):
    """eventsourcing's PostgreSQL process recorder, plus one `event_chain` row per event."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema, table = Identifier(datastore.schema), Identifier(CHAIN_TABLE)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
                "originator_id uuid NOT NULL, originator_version bigint NOT NULL, "
                "digest bytea NOT NULL, entry bytea NOT NULL, "
                "PRIMARY KEY (originator_id, originator_version))"
            ).format(schema=schema, table=table)
        )
        self.sql_create_statements.append(
            SQL(ANCHORS_DDL).format(schema=schema, table=Identifier(ANCHOR_TABLE))
        )
        # The previous link is read by the INSERT itself: no round trip, pipelined, and
        # several events of one aggregate in one batch see each other (executemany is ordered).
        self.sql_insert_link = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, digest, entry) "
            "SELECT %(id)s, %(v)s, %(d)s, sha256(coalesce((SELECT entry FROM {schema}.{table} "
            "WHERE originator_id = %(id)s AND originator_version = %(v)s - 1), ''::bytea) "
            "|| %(d)s)"
        ).format(schema=schema, table=table)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # first, before any row is written: a writer waiting here holds nothing another needs
        # (bounded: a writer holding one queue's session lock and waiting for another's must
        # give up and redo its batch, which releases it; eventsourcing resets the timeout)
        locks = kwargs.get("advisory_locks", ())
        if locks:
            curs.execute(SET_LOCK_TIMEOUT)
        for key in locks:
            curs.execute(XACT_LOCK, (key,))
        super()._insert_events(curs, stored_events, **kwargs)
        if stored_events:
            curs.executemany(
                self.sql_insert_link,
                [
                    {
                        "id": e.originator_id,
                        "v": e.originator_version,
                        "d": digest(
                            UUID(str(e.originator_id)), e.originator_version, e.topic, e.state
                        ),
                    }
                    for e in stored_events
                ],
            )


def links_of(db: Database, originator_id: UUID) -> list[tuple[int, str, str]]:
    """One aggregate's chain links in version order: (version, digest hex, entry hex)."""
    with db.connect() as conn:
        rows = conn.execute(
            SQL(
                "SELECT originator_version, encode(digest, 'hex'), encode(entry, 'hex') "
                "FROM {} WHERE originator_id = %s ORDER BY originator_version"
            ).format(Identifier(db.schema, CHAIN_TABLE)),
            (originator_id,),
        ).fetchall()
    return [(int(v), str(d), str(e)) for v, d, e in rows]
