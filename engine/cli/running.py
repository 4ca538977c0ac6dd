"""What the long-running commands share: stop on a signal, wait for the database, watch it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from engine.consumers.retry import retry_transient, watch_pool
from engine.postgres import db as dbmod
from engine.postgres.store import datastore_of
from engine.runtime import Runtime
from engine.settings import Settings


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT: finish the batch in hand, commit, leave the group, exit 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def wait_for_database(settings: Settings, stop: threading.Event) -> dbmod.Database:
    """Services may start before their database: wait for it, logging every few seconds."""
    database = dbmod.resolve(settings)
    retry_transient(lambda: database.connect().close(), what="database", stop=stop)
    return database


@contextmanager
def database_watched(rt: Runtime) -> Iterator[None]:
    """While a service runs, its connection pool's failures are logged and counted as a
    database outage (see `watch_pool`)."""
    datastore = datastore_of(rt.app.recorder)
    pool = None if datastore is None else datastore.pool
    done = threading.Event()
    if pool is not None:
        threading.Thread(
            target=watch_pool, args=(pool, done), daemon=True, name="leadengine-outage-watch"
        ).start()
    try:
        yield
    finally:
        done.set()
