"""The lean write path (engine/postgres/lean.py) on a real PostgreSQL: what it stores is what
eventsourcing's own insert stores, byte for byte, and eventsourcing's own recorder reads it
back; the chain verifies; conflicts, positions and notification order hold as before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresProcessRecorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.postgres.chain import ChainedProcessRecorder, links_of
from engine.postgres.verify import verify
from engine.runtime import Runtime
from engine.services.application import EVENTS_TABLE, TRACKING_TABLE

#: a topic as eventsourcing stores it: any text PostgreSQL accepts (no NUL), quotes, commas,
#: braces and backslashes included (what the composite array's text form has to escape)
TOPICS = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    max_size=40,
) | st.sampled_from(['a"b', "a,b", "{x}", "(y)", "back\\slash", ""])
#: each aggregate's events in version order, as one save would hold them
STREAMS = st.lists(
    st.lists(st.tuples(TOPICS, st.binary(max_size=300)), min_size=1, max_size=4),
    min_size=1,
    max_size=4,
)


def _vanilla(runtime: Runtime, events_table: str) -> PostgresProcessRecorder:
    """eventsourcing's own recorder on the same schema (its own tables, or the engine's)."""
    recorder = runtime.app.recorder
    assert isinstance(recorder, ChainedProcessRecorder)
    return PostgresProcessRecorder(
        recorder.datastore, events_table_name=events_table, tracking_table_name=TRACKING_TABLE
    )


def _batch(streams: list[list[tuple[str, bytes]]]) -> list[StoredEvent]:
    batch = []
    for events in streams:
        agg = uuid.uuid4()
        batch.extend(
            StoredEvent(agg, v, topic, state) for v, (topic, state) in enumerate(events, 1)
        )
    return batch


def _rows(recorder: Any, ids: set[uuid.UUID]) -> list[tuple[Any, ...]]:
    return sorted(
        (e.originator_id, e.originator_version, e.topic, bytes(e.state))
        for agg in ids
        for e in recorder.select_events(agg)
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(streams=STREAMS)
def test_lean_rows_equal_eventsourcings_own_insert_and_read_back_by_it(
    runtime: Runtime, streams: list[list[tuple[str, bytes]]]
) -> None:
    lean = runtime.app.recorder
    assert isinstance(lean, ChainedProcessRecorder)
    vanilla = _vanilla(runtime, "vanilla_events")
    vanilla.create_table()
    reader = _vanilla(runtime, EVENTS_TABLE)  # eventsourcing's recorder on the engine's table
    batch = _batch(streams)
    ids = {e.originator_id for e in batch}
    head = lean.max_notification_id() or 0
    lean_ids = lean.insert_events(batch)
    vanilla.insert_events(batch)
    # notification ids: in the batch's order, with no gap
    assert list(lean_ids or []) == list(range(head + 1, head + 1 + len(batch)))
    assert (
        _rows(reader, ids)
        == _rows(vanilla, ids)
        == sorted((e.originator_id, e.originator_version, e.topic, e.state) for e in batch)
    )
    notes = reader.select_notifications(head + 1, len(batch) + 10)
    assert [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notes] == [
        (i, e.originator_id, e.originator_version, e.topic, e.state)
        for i, e in zip(lean_ids or [], batch, strict=True)
    ]
    for agg in ids:  # every event linked, and the links follow from each other
        assert len(links_of(runtime.db, agg)) == len(list(lean.select_events(agg)))
        report = verify(runtime.db, agg)
        assert not report.breaks, report.breaks


def test_a_second_batch_links_onto_the_stored_chain(runtime: Runtime) -> None:
    lean = runtime.app.recorder
    assert isinstance(lean, ChainedProcessRecorder)
    agg = uuid.uuid4()
    lean.insert_events([StoredEvent(agg, 1, "t", b"a"), StoredEvent(agg, 2, "t", b"b")])
    lean.insert_events([StoredEvent(agg, 3, "t", b"c")])
    lean.insert_events([StoredEvent(agg, 4, "t", b"d"), StoredEvent(agg, 5, "t", b"e")])
    assert [v for v, _, _ in links_of(runtime.db, agg)] == [1, 2, 3, 4, 5]
    assert not verify(runtime.db, agg).breaks


def test_a_version_conflict_stores_nothing_of_the_batch(runtime: Runtime) -> None:
    lean = runtime.app.recorder
    assert isinstance(lean, ChainedProcessRecorder)
    agg, other = uuid.uuid4(), uuid.uuid4()
    lean.insert_events([StoredEvent(agg, 1, "t", b"first")], tracking=Tracking("up.0", 1))
    head = lean.max_notification_id()
    with pytest.raises(IntegrityError):
        lean.insert_events(
            [StoredEvent(other, 1, "t", b"x"), StoredEvent(agg, 1, "t", b"second")],
            tracking=Tracking("up.0", 2),
        )
    assert lean.max_notification_id() == head
    assert list(lean.select_events(other)) == [] and links_of(runtime.db, other) == []
    assert lean.max_tracking_id("up.0") == 1
    assert [bytes(e.state) for e in lean.select_events(agg)] == [b"first"]
    assert not verify(runtime.db, agg).breaks


def test_ingest_on_the_lean_path_verifies_and_times_the_table_lock(runtime: Runtime) -> None:
    lean = runtime.app.recorder
    assert isinstance(lean, ChainedProcessRecorder)
    before = lean.lock_times.batches
    events = [validate_event(e) for e in generate(40, seed=11)]
    for start in range(0, len(events), 100):
        runtime.app.ingest(events[start : start + 100], tracking=Tracking("up.1", start))
    report = verify(runtime.db)
    assert not report.breaks and report.notification_gaps == 0
    assert report.events == lean.max_notification_id()
    times = lean.lock_times
    assert times.batches - before == -(-len(events) // 100)  # one lock per batch that stored
    assert times.hold_s > 0 and times.max_hold_s <= times.hold_s
    assert times.wait_s >= 0
