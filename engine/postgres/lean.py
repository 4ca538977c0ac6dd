"""The lean write path's statements: events and chain links sent as plain binary arrays.

eventsourcing inserts a batch as one array of its composite type `stored_event_uuid`, which
psycopg dumps as text: every event's state bytes hex-escaped inside a quoted composite literal,
then parsed back by the server. Here the same rows go as four binary arrays (`unnest` of
uuid[], bigint[], text[], bytea[]) into the same table and columns, so eventsourcing's recorder
and tools read them as their own (`tests/integration/test_lean_write.py` proves it). Order,
`RETURNING notification_id` in insertion order, the table lock and the transaction are as
eventsourcing's own insert has them (engine/postgres/chain.py).

`LockTimes` keeps how long each batch waited for the events table's lock and how long it held
it (from the lock to its commit): the serial part of the write path, for the scaling
figures of docs/operations.md.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg import sql

from engine.postgres import binarray

#: the server's clock, in seconds since the epoch (beside the lock: when it was asked and got)
CLOCK = sql.SQL("SELECT extract(epoch FROM clock_timestamp())::float8 AS t")


class LeanStatements:
    """The lean path's statements for one schema and events table."""

    def __init__(self, schema: str, events_table: str, id_type: str = "uuid") -> None:
        s = sql.Identifier(schema)
        self.insert_events = sql.SQL(
            "INSERT INTO {s}.{t} AS t (originator_id, originator_version, topic, state) "
            "SELECT i, v, p, b FROM unnest(%b::{idt}[], %b::bigint[], %b::text[], %b::bytea[]) "
            "AS u(i, v, p, b) RETURNING notification_id"
        ).format(s=s, t=sql.Identifier(events_table), idt=sql.Identifier(id_type))
        self.insert_links = sql.SQL(
            "INSERT INTO {s}.event_chain (originator_id, originator_version, digest, entry) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::bytea[], %b::bytea[])"
        ).format(s=s)
        self.previous_links = sql.SQL(
            "SELECT c.originator_id, c.originator_version, c.entry FROM {s}.event_chain c "
            "JOIN unnest(%b::uuid[], %b::bigint[]) AS w(i, v) "
            "ON c.originator_id = w.i AND c.originator_version = w.v"
        ).format(s=s)


def columns(stored_events: Sequence[StoredEvent]) -> tuple[Any, ...]:
    """The events as four columns: ids, versions, topics, state bytes."""
    return (
        [e.originator_id for e in stored_events],
        binarray.int8s(e.originator_version for e in stored_events),
        binarray.texts(e.topic for e in stored_events),
        [bytes(e.state) for e in stored_events],
    )


@dataclass
class LockTimes:
    """Per batch: seconds waited for the events table's lock and held (lock to commit)."""

    batches: int = 0
    wait_s: float = 0.0
    hold_s: float = 0.0
    max_hold_s: float = 0.0
    holds: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, wait: float, hold: float) -> None:
        wait, hold = max(0.0, wait), max(0.0, hold)
        with self._lock:
            self.batches += 1
            self.wait_s += wait
            self.hold_s += hold
            self.max_hold_s = max(self.max_hold_s, hold)
            if len(self.holds) < 100_000:
                self.holds.append(hold)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "lock_batches": self.batches,
                "lock_wait_s": round(self.wait_s, 4),
                "lock_hold_s": round(self.hold_s, 4),
                "lock_max_hold_s": round(self.max_hold_s, 4),
            }
