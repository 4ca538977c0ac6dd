"""Retry transient failures (database or broker unreachable) with capped exponential backoff.

A transient failure is never a reason to skip or dead-letter a record: the caller waits until
the dependency is back. Everything else propagates at once. An outage is logged when it starts,
every few seconds while it lasts and when it ends, and counted in `leadengine_retries`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError
from kafka.errors import KafkaError

from engine import metrics
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
    max_wait: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    stop: threading.Event | None = None,
) -> T:
    """Call `fn` until it succeeds; back off on transient errors, re-raise the others (and a
    transient one once `stop` is set: a service told to stop during an outage stops)."""
    logger = log or get_logger("leadengine.retry")
    wait = first_wait
    attempt = 0
    started = last_log = 0.0
    while True:
        try:
            result = fn()
        except Exception as exc:
            if not is_transient(exc) or (stop is not None and stop.is_set()):
                raise
            attempt += 1
            metrics.retries.labels(what).inc()
            if on_retry is not None:
                on_retry()
            now = clock()
            if attempt == 1:
                started = last_log = now
                metrics.outages.labels(what).inc()
                logger.warning("outage started; retrying", what=what, error=_brief(exc))
            elif now - last_log >= max_wait:
                last_log = now
                logger.warning(
                    "outage continues; retrying",
                    what=what,
                    attempt=attempt,
                    down_s=round(now - started, 1),
                    error=_brief(exc),
                )
            if stop is not None:
                stop.wait(wait)
            else:
                sleep(wait)
            wait = min(max_wait, wait * 2)
            continue
        if attempt:
            logger.warning(
                "outage ended", what=what, attempts=attempt, down_s=round(clock() - started, 1)
            )
        return result


def _brief(exc: BaseException) -> str:
    """The error's type and first line (driver messages run over several)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
