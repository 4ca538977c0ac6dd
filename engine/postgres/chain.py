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
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg import Cursor, Pipeline
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from engine.postgres import binarray
from engine.postgres.contention import SET_LOCK_TIMEOUT, XACT_LOCK
from engine.postgres.db import Database
from engine.postgres.lean import CLOCK, LeanStatements, LockTimes, columns

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
    """eventsourcing's PostgreSQL process recorder, plus one `event_chain` row per event, on a
    lean write path (engine/postgres/lean.py): the same table layout, the same transaction (the
    position, the links, the table lock, the events, the outbox rows, in that order), each
    written as plain binary columns instead of eventsourcing's text-escaped composite array."""

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
        self.lean = LeanStatements(
            datastore.schema, self.events_table_name, datastore.originator_id_type
        )
        #: how long each batch waited for, and held, the events table's lock
        self.lock_times = LockTimes()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """eventsourcing's pipelined insert (PostgresApplicationRecorder.insert_events), with
        the chain links computed before the transaction and the rows sent as binary arrays."""
        if self.datastore.enable_db_functions:  # pragma: no cover - not how leadengine runs
            raise ProgrammingError("the chained recorder does not insert through db functions")
        exc: Exception | None = None
        ids: Sequence[int] | None = None
        clock: dict[str, float] = {}
        with self.datastore.get_connection() as conn:
            # the previous links, read before the transaction: no lock is held while waiting
            links = chain_links(conn, self.lean, stored_events)
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._insert_events(curs, stored_events, **kwargs)
                    if links:
                        curs.execute(self.lean.insert_links, links.columns(), prepare=True)
                if stored_events:
                    with conn.cursor() as curs, conn.cursor() as before, conn.cursor() as after:
                        try:
                            before.execute(CLOCK, prepare=True)
                            self._lock_table(curs)
                            after.execute(CLOCK, prepare=True)
                            self._notify_channel(curs)
                            curs.execute(
                                self.lean.insert_events, columns(stored_events), prepare=True
                            )
                            # sync now: a uniqueness violation raises IntegrityError here
                            pipeline.sync()
                            clock["asked"] = _seconds(before)
                            clock["locked"] = _seconds(after)
                            ids = self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
                        except Exception as e:  # raised after the pipeline exits (psycopg)
                            exc = e
                            _settle(pipeline)
            if exc:
                raise exc
        if "locked" in clock:
            self.lock_times.add(clock["locked"] - clock["asked"], time.time() - clock["locked"])
        return ids

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
        # the batch's duplicate index rows (engine/postgres/duplicates.py): with its events
        writes = kwargs.get("duplicate_writes")
        if writes:
            writes.write(curs)
        super()._insert_events(curs, stored_events, **kwargs)


def _settle(pipeline: Pipeline) -> None:
    """After a failure: read the pipeline up to a sync point, so that it is out of its aborted
    state before the transaction ends. An error can arrive while a later statement is sent
    rather than at `sync()` (when the server answers early, as under load); without this, the
    pipeline's exit raises PipelineAborted over it and a version conflict (IntegrityError,
    redone on a fresh read) becomes an OperationalError retried to the end."""
    with suppress(psycopg.Error):  # the statements queued after it: the failure is kept
        pipeline.sync()


def _seconds(curs: Cursor[DictRow]) -> float:
    row = curs.fetchone()
    assert row is not None
    return float(row["t"])


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


@dataclass(frozen=True)
class Links:
    """A batch's chain rows, as four columns (ids, versions, digests, entries)."""

    ids: list[Any]
    versions: list[int]
    digests: list[bytes]
    entries: list[bytes]

    def columns(self) -> tuple[Any, ...]:
        return (self.ids, binarray.int8s(self.versions), self.digests, self.entries)


def chain_links(
    conn: Any, lean: LeanStatements, stored_events: Sequence[StoredEvent]
) -> Links | None:
    """Each event's link, computed here: the previous entry is the one computed for the
    aggregate's previous version earlier in the batch, else the stored one (one query for the
    whole batch), else empty (a first event, or one recorded before chains existed): what the
    per-event `INSERT ... SELECT sha256(coalesce((SELECT entry ...), '') || digest)` of the
    earlier write path gave. A stored entry never changes, and a version another writer stores
    meanwhile fails this batch on the events' primary key, so reading it before the
    transaction is safe."""
    if not stored_events:
        return None
    ids = [e.originator_id for e in stored_events]
    versions = [int(e.originator_version) for e in stored_events]
    uuids = [i if isinstance(i, UUID) else UUID(str(i)) for i in ids]
    digests = [
        digest(u, v, e.topic, e.state)
        for u, v, e in zip(uuids, versions, stored_events, strict=True)
    ]
    seen: set[tuple[UUID, int]] = set()
    wanted: list[tuple[UUID, int]] = []
    for u, v in zip(uuids, versions, strict=True):
        if (u, v - 1) not in seen:
            wanted.append((u, v - 1))
        seen.add((u, v))
    stored: dict[tuple[UUID, int], bytes] = {}
    if wanted:
        with conn.cursor() as curs:
            curs.execute(
                lean.previous_links,
                ([w[0] for w in wanted], binarray.int8s(w[1] for w in wanted)),
                prepare=True,
            )
            for row in curs.fetchall():
                key = (UUID(str(row["originator_id"])), int(row["originator_version"]))
                stored[key] = bytes(row["entry"])
    made: dict[tuple[UUID, int], bytes] = {}
    entries: list[bytes] = []
    for u, v, d in zip(uuids, versions, digests, strict=True):
        previous = made.get((u, v - 1))
        if previous is None:
            previous = stored.get((u, v - 1), b"")
        entry = link(previous, d)
        made[(u, v)] = entry
        entries.append(entry)
    return Links(uuids, versions, digests, entries)
