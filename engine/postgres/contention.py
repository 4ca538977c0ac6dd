"""Writers of one shared aggregate (a routing queue, the roster) take turns instead of racing.

Optimistic first: a batch reads a queue, decides, saves; the save holds a transaction-scoped
advisory lock on every shared aggregate it writes. When a save loses a version conflict, the
aggregates it shared become contended for `hold_s` seconds: from then on this process takes a
session advisory lock on such an aggregate *before* reading it and keeps it until its batch
commits or fails. Every other writer's save waits on that lock, so a batch that holds it
cannot lose the race again: a loser redoes its batch once, then waits its turn instead of
redoing it over and over (the starvation the race otherwise allows: the loser re-reads every
lead it evicted, so it is slower, so it loses again).

Every shared aggregate the batch wrote becomes contended, not only the one the conflict
names: marking only the named one was tried and let two consumers take turns losing on the
next shared stream of their batches, with lock timeouts, stalling a batch ~55 s (CI,
test_two_consumers_share_partitions_and_one_stops_halfway).

CRM accounts have two writers, the consumers (`account.*` events) and the projector beside them
(its settling's decisions, `LeadEngine.record_account_decisions`): each takes the session locks
of the accounts it will write (`hold`) before it reads them, so the two take turns instead of
one redoing a whole batch. `hold` is only called holding no lock, with the keys in one order,
so it cannot close a cycle of waits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

LOCK = sql.SQL("SELECT pg_advisory_lock(%s)")
#: session locks on several keys, taken one after the other in the array's order
LOCK_ALL = sql.SQL("SELECT count(pg_advisory_lock(k)) FROM unnest(%s::bigint[]) AS u(k)")
UNLOCK_ALL = sql.SQL("SELECT count(pg_advisory_unlock(k)) FROM unnest(%s::bigint[]) AS u(k)")
XACT_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
#: how long a save waits for a shared aggregate another batch holds before it gives up (and
#: is retried): longer than a batch takes, short enough to undo a wait on each other
SET_LOCK_TIMEOUT = sql.SQL("SET LOCAL lock_timeout = '5s'")


def conflict_detail(exc: BaseException) -> str | None:
    """PostgreSQL's detail of the error under `exc` (eventsourcing wraps psycopg's)."""
    cause = exc.__cause__ or exc.__context__
    detail = getattr(getattr(cause, "diag", None), "message_detail", None)
    return str(detail) if detail else None


def lock_key(agg_id: UUID) -> int:
    """The advisory lock key (a signed bigint) of an aggregate."""
    return int.from_bytes(agg_id.bytes[:8], "big", signed=True)


class SharedLocks:
    """Session locks on contended shared aggregates, held by one connection per batch."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        hold_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.datastore = datastore
        self.hold_s = hold_s
        self.clock = clock
        self._contended: dict[UUID, float] = {}  # aggregate id -> contended until (clock)
        self._held: set[UUID] = set()
        self._conn: Any = None
        self._stack = contextlib.ExitStack()

    def contended(self, ids: Iterable[UUID]) -> None:
        until = self.clock() + self.hold_s
        for agg_id in ids:
            self._contended[agg_id] = until

    def is_contended(self, agg_id: UUID) -> bool:
        until = self._contended.get(agg_id)
        if until is None:
            return False
        if until < self.clock():
            del self._contended[agg_id]
            return False
        return True

    def before_read(self, agg_id: UUID) -> None:
        """Take the aggregate's session lock if it is contended (waits for the holder)."""
        if agg_id in self._held or not self.is_contended(agg_id):
            return
        if self._conn is None:
            self._conn = self._stack.enter_context(self.datastore.get_connection())
        self._conn.execute(LOCK, (lock_key(agg_id),))
        self._held.add(agg_id)

    def hold(self, ids: Iterable[UUID]) -> None:
        """Take the session locks of `ids` (waits for their holders), in the order of their
        keys, in one round trip; held until `release`. Called only while this process holds
        no lock (the start of a batch, of a settle's save): every writer then waits holding
        nothing or takes its keys in that order, so the waits never form a cycle."""
        if self._held:
            raise RuntimeError("hold() while holding locks could deadlock: release() first")
        wanted = {lock_key(i): i for i in ids}
        if not wanted:
            return
        if self._conn is None:
            self._conn = self._stack.enter_context(self.datastore.get_connection())
        keys = sorted(wanted)
        self._conn.execute(LOCK_ALL, (keys,))
        self._held.update(wanted[k] for k in keys)

    @property
    def held(self) -> frozenset[UUID]:
        return frozenset(self._held)

    def release(self) -> None:
        """Release every session lock; a connection that fails to is closed (its session ends,
        and its locks with it), never handed back to the pool still holding one."""
        conn, held = self._conn, sorted(self._held)
        self._held.clear()
        self._conn = None
        try:
            if conn is not None and held:  # one round trip for all
                conn.execute(UNLOCK_ALL, (sorted(lock_key(i) for i in held),))
        except Exception:
            with contextlib.suppress(Exception):
                conn.close()
        finally:
            with contextlib.suppress(Exception):
                self._stack.close()
            self._stack = contextlib.ExitStack()
