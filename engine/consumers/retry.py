"""Retry transient failures (database or broker unreachable) with capped exponential backoff,
and batches that lost a version conflict to another writer (redone on fresh reads).

A transient failure is never a reason to skip or dead-letter a record: the caller waits until
the dependency is back. Everything else propagates at once. An outage is logged when it starts,
every few seconds while it lasts and when it ends, and counted in `leadengine_retries`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import psycopg
import psycopg_pool
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from kafka.errors import KafkaError
from structlog.stdlib import BoundLogger

from engine import metrics
from engine.logs import get_logger
from engine.postgres.contention import conflict_detail

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


class Outage:
    """One dependency (the database, the broker) as its users see it: an outage is logged when
    it starts, every few seconds while it lasts and when it ends, whoever notices it; every
    failed attempt counts in `leadengine_retries_total{what}`."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        self.what = what
        self.every = every
        self.started: float | None = None
        self.attempts = 0
        self._last_log = 0.0
        self._lock = threading.Lock()

    def failed(
        self, error: str, now: float, *, attempts: int = 1, log: BoundLogger | None = None
    ) -> None:
        logger = log or get_logger("leadengine.retry")
        metrics.retries.labels(self.what).inc(attempts)
        with self._lock:
            self.attempts += attempts
            if self.started is None:
                self.started = self._last_log = now
                metrics.outages.labels(self.what).inc()
                logger.warning("outage started; retrying", what=self.what, error=error)
            elif now - self._last_log >= self.every:
                self._last_log = now
                logger.warning(
                    "outage continues; retrying",
                    what=self.what,
                    attempts=self.attempts,
                    down_s=round(now - self.started, 1),
                    error=error,
                )

    def ended(self, now: float, *, log: BoundLogger | None = None) -> None:
        with self._lock:
            if self.started is None:
                return
            (log or get_logger("leadengine.retry")).warning(
                "outage ended",
                what=self.what,
                attempts=self.attempts,
                down_s=round(now - self.started, 1),
            )
            self.started, self.attempts = None, 0


OUTAGES = {what: Outage(what) for what in ("database", "kafka broker")}


def dependency(exc: BaseException) -> str:
    return "kafka broker" if isinstance(exc, KafkaError) else "database"


def retry_transient(
    fn: Callable[[], T],
    *,
    what: str,
    log: BoundLogger | None = None,
    first_wait: float = 0.2,
    max_wait: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> T:
    """Call `fn` (doing `what`) until it succeeds; back off on transient errors, re-raise the
    others (and a transient one once `stop` is set: a service told to stop during an outage
    stops). The outage is the failing dependency's, shared with whoever else notices it."""
    wait = first_wait
    outage: Outage | None = None
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not is_transient(exc) or (stop is not None and stop.is_set()):
                raise
            outage = OUTAGES[dependency(exc)]
            outage.failed(f"{what}: {_brief(exc)}", clock(), log=log)
            if on_retry is not None:
                on_retry()
            if stop is not None:
                stop.wait(wait)
            else:
                sleep(wait)
            wait = min(max_wait, wait * 2)
            continue
        if outage is not None:
            outage.ended(clock(), log=log)
        return result


@dataclass
class RaceStats:
    """How often batches lost a version conflict to another writer, and what that cost."""

    races: int = 0  # attempts another writer stored first, redone on fresh reads
    max_races_in_a_row: int = 0  # the most one batch was redone before it stored
    max_stall_s: float = 0.0  # longest one batch took to store, redos and lock waits included
    redone_over_twice: int = 0  # batches redone more than twice before they stored

    def as_dict(self) -> dict[str, Any]:
        return {
            "races": self.races,
            "max_races_in_a_row": self.max_races_in_a_row,
            "redone_over_twice": self.redone_over_twice,
            "max_stall_s": round(self.max_stall_s, 3),
        }


def store_racing(
    fn: Callable[[], T],
    *,
    stats: RaceStats,
    what: str,
    log: BoundLogger | None = None,
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
            except IntegrityError as exc:
                if in_a_row >= max_in_a_row:
                    raise
                in_a_row += 1
                stats.races += 1
                stats.redone_over_twice += in_a_row == 3
                stats.max_races_in_a_row = max(stats.max_races_in_a_row, in_a_row)
                logger.info(
                    "raced another writer; retrying on fresh reads",
                    what=what,
                    error=_brief(exc),
                    key=conflict_detail(exc),
                )
                if settled is not None and settled():
                    return None
    finally:
        stats.max_stall_s = max(stats.max_stall_s, time.monotonic() - started)


class PoolStats(Protocol):
    """A connection pool that counts its connections (psycopg_pool's `get_stats`)."""

    def get_stats(self) -> dict[str, int]: ...


def watch_pool(pool: PoolStats, stop: threading.Event, every: float = 1.0) -> None:
    """Until `stop`: the pool's failed connection attempts are database retries, and its next
    good connection ends the outage. eventsourcing retries each call ten times inside, so an
    outage of a minute could pass without one error reaching `retry_transient`."""
    outage = OUTAGES["database"]
    last = pool.get_stats()
    while not stop.wait(every):
        stats = pool.get_stats()
        failed = stats.get("connections_errors", 0) - last.get("connections_errors", 0)
        made = stats.get("connections_num", 0) - last.get("connections_num", 0) - failed
        last = stats
        if failed > 0:
            outage.failed(f"{failed} failed connection attempts", time.monotonic(), attempts=failed)
        if made > 0:
            outage.ended(time.monotonic())


class KafkaConnections(logging.Handler):
    """kafka-python reconnects to a lost broker by itself and says so only in its own logs
    (kept off the console): read them as the broker's outage starting and ending. Records at
    or above `console_level` still reach the console."""

    FAILED = ("Connection failed", "Connection lost", "socket disconnected", "Request timed out")

    def __init__(self, console_level: int) -> None:
        super().__init__(logging.INFO)
        self.console_level = console_level

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        outage = OUTAGES["kafka broker"]
        if record.levelno >= logging.WARNING and any(f in message for f in self.FAILED):
            outage.failed(re.sub(r"^<[^>]*>:\s*", "", message)[:200], time.monotonic())
        elif message.endswith(": Connected"):
            outage.ended(time.monotonic())
        if record.levelno >= self.console_level:
            logging.getLogger().handle(record)


@contextmanager
def kafka_watched() -> Iterator[None]:
    """While a service consumes: the broker's outages are logged and counted like the
    database's (`KafkaConnections`)."""
    logger = logging.getLogger("kafka")
    level, propagate = logger.level, logger.propagate
    handler = KafkaConnections(console_level=logger.getEffectiveLevel())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _brief(exc: BaseException) -> str:
    """The error's type and first line (driver messages run over several)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
