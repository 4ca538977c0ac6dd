"""The projector beside the consumer: `consume` stores and projects at the same time.

The consumer (engine/consumers/kafka.py) decides and stores batches; a child process
(`ProjectorBeside`) follows the notification log with the ordinary projector meanwhile, so
storing and projecting run on two cores instead of one after the other. They share nothing
but the database: the log is the hand-over, and each projection's position commits with its
rows, so either side can stop or crash at any point and the next run resumes where its last
commit left off.

- A lead that fails to fold or write is parked (engine/projections/parking.py); the projector
  goes on, as it does alone.
- The database going away is waited out (logged as an outage, retried with back-off).
- Anything else stops the child with its reason; the consumer is then told to stop after the
  batch in hand (`on_failure`), and `finish` raises the reason: a supervisor restarts the
  service, which resumes from the stored positions.
- `finish()` is `--until-caught-up`'s end: once the consumer has stored everything, the child
  projects until a batch read *after* that moment finds nothing, so caught up means stored and
  projected. `stop()` (SIGTERM/SIGINT) ends the batch in hand and exits.
- The child watches its parent: if the consumer process dies, the child stops too.
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

from engine.consumers.retry import retry_transient
from engine.domain.errors import LeadEngineError
from engine.domain.rules import Rules
from engine.logs import configure_logging, get_logger
from engine.postgres.db import Database
from engine.projections.projector import PositionMoved, Projector
from engine.services.application import LeadEngine
from engine.settings import Settings

log = get_logger("engine.projector")

#: How long the child waits for more events after a batch that was not full: a batch has costs
#: that do not shrink with it (settling accounts over every lead, the tracking rows), so it
#: lets the consumer store a fuller one (`finish` wakes it at once).
IDLE_WAIT = 1.0
#: Notifications per projector batch: as `leadengine project` (the consumer's
#: LEADENGINE_BATCH_SIZE is per poll; a projector batch has per-batch costs worth spreading).
BATCH_SIZE = 2000


class ProjectorFailed(LeadEngineError):
    """The projector beside the consumer stopped on an error that is not one lead's."""


def project_beside(
    app: LeadEngine,
    db: Database,
    *,
    stop: Event,
    drain: Event,
    batch_size: int,
    cache_size: int,
    alive: Callable[[], bool] = lambda: True,
    idle_wait: float = IDLE_WAIT,
) -> int:
    """Project the log as it grows until `stop`, or until caught up once `drain` is set (the
    consumer stored everything). Returns the number of notifications projected."""
    projector = Projector(app, db, batch_size=batch_size, cache_size=cache_size)
    done = 0
    try:
        positions = retry_transient(projector.positions, what="read projection positions")
        while not stop.is_set():
            draining = drain.is_set()  # before the read: everything stored is in this batch
            try:
                count, positions = retry_transient(
                    functools.partial(projector.run_batch, positions), what="project a batch"
                )
            except PositionMoved as moved:
                log.info("projection position moved; resuming from it", reason=str(moved))
                positions = retry_transient(projector.positions, what="read projection positions")
                continue
            done += count
            if count == 0 and draining:
                break
            if count < batch_size and not draining:
                if not alive():
                    log.warning("the consumer is gone; the projector beside it stops")
                    break
                drain.wait(idle_wait)
    finally:
        projector.close()
    return done


def _child(
    settings: Settings,
    db: Database,
    rules: Rules,
    master_key: bytes,
    stop: Event,
    drain: Event,
    results: Queue[tuple[str, Any]],
) -> None:
    """The child process: its own application and connections, the parent's signals ignored
    (the parent tells it to stop once its own batch in hand is done)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    configure_logging(settings.log_format, settings.log_level)
    parent = os.getppid()
    env = db.eventsourcing_env() | {"AGGREGATE_CACHE_MAXSIZE": str(settings.cache_size)}
    try:
        app = LeadEngine(rules=rules, env=env, master_key=master_key)
        try:
            done = project_beside(
                app,
                db,
                stop=stop,
                drain=drain,
                batch_size=BATCH_SIZE,
                cache_size=settings.cache_size,
                alive=lambda: os.getppid() == parent,
            )
        finally:
            app.close()
    except BaseException as exc:
        results.put(("error", f"{exc.__class__.__name__}: {exc}"))
        raise SystemExit(1) from None
    results.put(("done", done))


class ProjectorBeside:
    """A projector process beside this one's consumer (see the module's docstring)."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        rules: Rules,
        master_key: bytes,
        *,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        context = get_context("spawn")  # the parent has threads (pool, Kafka): never fork
        self._stop = context.Event()
        self._drain = context.Event()
        self._results: Queue[tuple[str, Any]] = context.Queue()
        self._process: BaseProcess = context.Process(
            target=_child,
            args=(settings, db, rules, master_key, self._stop, self._drain, self._results),
            name="leadengine-projector",
            daemon=True,
        )
        self._on_failure = on_failure
        self._outcome: tuple[str, Any] | None = None
        self._watcher = threading.Thread(
            target=self._watch, name="leadengine-projector-watch", daemon=True
        )

    def start(self) -> ProjectorBeside:
        self._process.start()
        self._watcher.start()
        return self

    def _watch(self) -> None:
        """Wait for the child; if it failed, tell the consumer to stop after its batch."""
        self._process.join()
        self._outcome = self._collect()
        if self._outcome[0] == "error" and self._on_failure is not None:
            log.error("the projector beside the consumer stopped", reason=self._outcome[1])
            self._on_failure()

    def _collect(self) -> tuple[str, Any]:
        try:
            return self._results.get(timeout=5)
        except queue.Empty:
            return ("error", f"the projector process ended with exit code {self._process.exitcode}")

    def finish(self, timeout: float | None = None) -> int:
        """Project until caught up with everything stored so far, then end; the number of
        notifications projected. Raises ProjectorFailed with the child's reason if it failed."""
        self._drain.set()
        return self._wait(timeout)

    def stop(self, timeout: float | None = None) -> int:
        """End after the batch in hand."""
        self._stop.set()
        return self._wait(timeout)

    def _wait(self, timeout: float | None) -> int:
        self._watcher.join(timeout)
        if self._watcher.is_alive():
            self._stop.set()
            self._process.terminate()
            self._watcher.join(10)
            raise ProjectorFailed(f"the projector beside the consumer did not end in {timeout} s")
        assert self._outcome is not None
        kind, value = self._outcome
        if kind == "error":
            raise ProjectorFailed(f"the projector beside the consumer failed ({value})")
        return int(value)

    @property
    def failed(self) -> bool:
        return self._outcome is not None and self._outcome[0] == "error"
