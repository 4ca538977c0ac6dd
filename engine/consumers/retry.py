"""Retry transient failures (database or broker unreachable) with capped exponential backoff.

A transient failure is never a reason to skip or dead-letter a record: the caller waits until
the dependency is back. Everything else propagates at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError
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
