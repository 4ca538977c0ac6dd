"""The projector reads the next batch's notifications while it writes this one (`read_ahead`):
the same rows, parks and positions as reading each batch after the last one committed, and a
page read ahead is used only when it is full (events stored after it was read, by another
writer or by the batch's own account decisions, are never skipped or left behind)."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.projections.projector import TABLES, Projector
from engine.runtime import Runtime

READER = "leadengine-read-ahead"


def query(runtime: Runtime, text: str) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(runtime.db.schema)))
        return conn.execute(text).fetchall()  # type: ignore[call-overload, no-any-return]


def snapshot(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    found = {t: query(runtime, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}
    found["parked"] = query(runtime, "SELECT projection, originator_id FROM parked ORDER BY 1, 2")
    return found


def clear(runtime: Runtime) -> None:
    with runtime.db.connect() as conn:
        for table in (*TABLES, "projection_tracking", "parked"):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(runtime.db.schema, table)))


def project(runtime: Runtime, **kwargs: Any) -> Projector:
    projector = Projector(runtime.app, runtime.db, **kwargs)
    try:
        projector.run()
    finally:
        projector.close()
    return projector


def caught_up(runtime: Runtime, projector: Projector) -> bool:
    head = runtime.app.recorder.max_notification_id() or 0
    return set(projector.positions().values()) == {head}


def spy_reads(runtime: Runtime, monkeypatch: Any) -> list[str]:
    """The thread of each read of the notification log, in order."""
    threads: list[str] = []
    read = runtime.app.recorder.select_notifications

    def spied(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return read(*args, **kwargs)

    monkeypatch.setattr(runtime.app.recorder, "select_notifications", spied)
    return threads


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch_size=st.sampled_from([7, 13, 40, 97, 500]))
def test_reading_ahead_projects_what_reading_after_each_commit_does(
    runtime: Runtime, monkeypatch: Any, batch_size: int
) -> None:
    if not (runtime.app.recorder.max_notification_id() or 0):  # one log for every example
        runtime.app.ingest([validate_event(e) for e in generate(25, seed=11)])
    clear(runtime)
    after_each_commit = project(runtime, batch_size=batch_size, read_ahead=False)
    assert caught_up(runtime, after_each_commit)
    expected = snapshot(runtime)
    assert expected["lead_state"] and expected["lead_touchpoints"]

    clear(runtime)
    threads = spy_reads(runtime, monkeypatch)
    ahead = project(runtime, batch_size=batch_size)
    monkeypatch.undo()
    assert caught_up(runtime, ahead)
    assert snapshot(runtime) == expected
    assert READER in {t.rsplit("_", 1)[0] for t in threads}  # pages were read ahead


def test_a_page_read_ahead_short_of_a_batch_is_read_again(
    runtime: Runtime, monkeypatch: Any
) -> None:
    """Events stored after a short page was read ahead are in the next batch, as a read after
    the commit has them: every batch but the run's last is a full one."""
    events = [validate_event(e) for e in generate(20, seed=3)]
    half = len(events) // 3  # the rest: more than two batches' worth
    runtime.app.ingest(events[:half])
    first = runtime.app.recorder.max_notification_id() or 0
    batch_size = first - 5  # the page read ahead past the first batch: 5 notifications
    threads = spy_reads(runtime, monkeypatch)
    read_ahead = threading.Event()
    spied = runtime.app.recorder.select_notifications

    def read(*args: Any, **kwargs: Any) -> Any:
        try:
            return spied(*args, **kwargs)
        finally:
            if threading.current_thread().name.startswith(READER):
                read_ahead.set()

    monkeypatch.setattr(runtime.app.recorder, "select_notifications", read)
    record = runtime.app.record_account_decisions
    stored_more: list[int] = []

    def record_then_store_more(*args: Any, **kwargs: Any) -> Any:
        # in the first batch's write, once the page past it was read ahead: another writer
        # stores the rest of the file before the batch commits
        if not stored_more:
            assert read_ahead.wait(30)
            runtime.app.ingest(events[half:])
            stored_more.append(runtime.app.recorder.max_notification_id() or 0)
        return record(*args, **kwargs)

    monkeypatch.setattr(runtime.app, "record_account_decisions", record_then_store_more)
    projector = Projector(runtime.app, runtime.db, batch_size=batch_size)
    done: list[int] = []
    try:
        projector.run(progress=lambda count, _position: done.append(count))
    finally:
        projector.close()
    monkeypatch.undo()
    assert stored_more and stored_more[0] > first + batch_size  # a full second batch stored
    assert caught_up(runtime, projector)
    assert any(t.startswith(READER) for t in threads)
    sizes = [b - a for a, b in zip([0, *done], done, strict=False)]
    assert sizes[:2] == [batch_size, batch_size], sizes  # not the 5 read ahead
    together = snapshot(runtime)

    clear(runtime)
    project(runtime, read_ahead=False)
    assert snapshot(runtime) == together
