"""The projector's per-event shortcuts keep its rows and counts: projections at different
positions in one pass (each counts only the events past its own position), and the routing
aggregates' events skipped before they are decoded (nothing reads them)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.projections.fold import ROUTING_STATE_EVENTS, ROUTING_STATE_TOPICS
from engine.projections.projector import TABLES, Projector
from engine.runtime import Runtime


def query(runtime: Runtime, text: str, *params: Any) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(runtime.db.schema)))
        return conn.execute(text, params).fetchall()  # type: ignore[call-overload, no-any-return]


def snapshot(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    return {t: query(runtime, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}


def project(runtime: Runtime, **kwargs: Any) -> None:
    projector = Projector(runtime.app, runtime.db, **kwargs)
    try:
        projector.run()
    finally:
        projector.close()


def test_projections_behind_count_their_own_events_and_rows_match_a_clean_pass(
    runtime: Runtime,
) -> None:
    events = [validate_event(e) for e in generate(30, seed=5)]
    half = len(events) // 2
    runtime.app.ingest(events[:half])
    project(runtime, only="touchpoints")  # touchpoints ahead, the others from the start
    ahead = dict(query(runtime, "SELECT name, position FROM projection_tracking"))["touchpoints"]
    runtime.app.ingest(events[half:])
    head = runtime.app.recorder.max_notification_id() or 0
    assert 0 < ahead < head

    projector = Projector(runtime.app, runtime.db)
    try:  # one batch: touchpoints counts the events past its position only
        count, positions = projector.run_batch(projector.positions())
        counts = dict(query(runtime, "SELECT name, batch_events FROM projection_tracking"))
        projector.run()  # and the account decisions the batch recorded
    finally:
        projector.close()
    assert count == head and set(positions.values()) == {head}
    assert counts["touchpoints"] == head - ahead
    assert counts["leads"] == counts["history"] == counts["costs"] == head
    staggered = snapshot(runtime)
    assert staggered["lead_state"] and staggered["lead_touchpoints"]

    with runtime.db.connect() as conn:
        for table in (*TABLES, "projection_tracking", "parked"):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(runtime.db.schema, table)))
    project(runtime, batch_size=13)  # from scratch, many odd batches
    assert snapshot(runtime) == staggered


def test_routing_state_events_are_not_decoded(runtime: Runtime) -> None:
    """A routing aggregate's event whose state no longer decodes parks nothing: it is skipped
    by its topic (its effects show on the leads' own events)."""
    assert len(ROUTING_STATE_TOPICS) == len(ROUTING_STATE_EVENTS)
    runtime.app.ingest([validate_event(e) for e in generate(30, seed=5)])
    topics = [t for (t,) in query(runtime, "SELECT DISTINCT topic FROM leadengine_events")]
    skipped = [t for t in topics if t in ROUTING_STATE_TOPICS]
    assert skipped, "the generated log routes leads: it holds routing aggregates' events"
    project(runtime)
    clean = snapshot(runtime)
    with runtime.db.connect() as conn:
        for table in (*TABLES, "projection_tracking", "parked"):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(runtime.db.schema, table)))
        conn.execute(
            sql.SQL("UPDATE {} SET state = %s WHERE topic = ANY(%s)").format(
                sql.Identifier(runtime.db.schema, "leadengine_events")
            ),
            (b"not json", skipped),
        )
    project(runtime)
    assert query(runtime, "SELECT count(*) FROM parked") == [(0,)]
    assert snapshot(runtime) == clean
