"""Retry transient failures (database or broker unreachable) with capped exponential backoff,
and batches that lost a version conflict to another writer (redone on fresh reads).

A transient failure is never a reason to skip or dead-letter a record: the caller waits until
the dependency is back. Everything else propagates at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from kafka.errors import KafkaError

from engine.logs import get_logger

T = TypeVar("T")

TRANSIENT: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    ConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))


def retry_transient(
    fn: Callable[[], T],
    *,
    what: str,
    log: Any = None,
    first_wait: float = 0.2,
    max_wait: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Call `fn` until it succeeds; back off on transient errors, re-raise the others."""
    logger = log or get_logger("leadengine.retry")
    wait = first_wait
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            if on_retry is not None:
                on_retry()
            logger.warning(
                "transient failure, retrying",
                what=what,
                attempt=attempt,
                wait_s=round(wait, 2),
                error=type(exc).__name__,
            )
            sleep(wait)
            wait = min(max_wait, wait * 2)


@dataclass
class RaceStats:
    """How often batches lost a version conflict to another writer, and what that cost."""

    races: int = 0  # attempts another writer stored first, redone on fresh reads
    max_races_in_a_row: int = 0  # the most one batch was redone before it stored
    max_stall_s: float = 0.0  # longest one batch took to store, redos and lock waits included

    def as_dict(self) -> dict[str, Any]:
        return {
            "races": self.races,
            "max_races_in_a_row": self.max_races_in_a_row,
            "max_stall_s": round(self.max_stall_s, 3),
        }


def store_racing(
    fn: Callable[[], T],
    *,
    stats: RaceStats,
    what: str,
    log: Any = None,
    settled: Callable[[], bool] | None = None,
    on_retry: Callable[[], None] | None = None,
    max_in_a_row: int = 50,
) -> T | None:
    """Call `fn` until it stores: transient failures are waited out, version conflicts redone.

    A version conflict means another writer stored first (a shared routing queue, or the same
    lead during a rebalance); the failed attempt evicted what it touched, so the next one reads
    fresh and records only what the store lacks. `settled()` is asked after a conflict: True
    means the work is stored already (another member did it) and None is returned. Losing
    `max_in_a_row` times running is no race (writers take turns after one loss) but a key the
    store holds for another reason: the error is raised then, never retried for ever."""
    logger = log or get_logger("leadengine.retry")
    started = time.monotonic()
    in_a_row = 0
    try:
        while True:
            try:
                return retry_transient(fn, what=what, log=logger, on_retry=on_retry)
            except IntegrityError:
                if in_a_row >= max_in_a_row:
                    raise
                in_a_row += 1
                stats.races += 1
                stats.max_races_in_a_row = max(stats.max_races_in_a_row, in_a_row)
                logger.info("raced another writer; retrying on fresh reads", what=what)
                if settled is not None and settled():
                    return None
    finally:
        stats.max_stall_s = max(stats.max_stall_s, time.monotonic() - started)
