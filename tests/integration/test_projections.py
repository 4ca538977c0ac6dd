"""Projections on a real PostgreSQL: batched, tracked, restartable, equal to the aggregates."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime


def rows(runtime: Runtime, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(runtime.db.schema)))
        return conn.execute(query, params).fetchall()  # type: ignore[call-overload, no-any-return]


def ingest(runtime: Runtime, leads: int = 40, seed: int = 9) -> list[Any]:
    events = [validate_event(e) for e in generate(leads, seed=seed)]
    runtime.app.ingest(events)
    return events


def test_read_model_matches_the_aggregates(runtime: Runtime) -> None:
    events = ingest(runtime)
    runtime.projector.batch_size = 97  # many batches, odd boundaries
    done = runtime.projector.run()
    assert done == runtime.app.recorder.max_notification_id()
    assert runtime.projector.lag() == 0
    keys = sorted({e.subject for e in events if e.is_lead_event})
    state = {
        r[0]: r[1:]
        for r in rows(runtime, "SELECT lead_key, stage, owner, score, version FROM lead_state")
    }
    assert sorted(state) == keys
    for key in keys:
        lead = runtime.app.get_lead(key)
        stage, owner, score, version = state[key]
        assert (stage, owner, version) == (lead.stage, lead.owner, lead.version)
        assert float(score) == lead.current_score(runtime.rules).total
    touches = rows(runtime, "SELECT count(*) FROM lead_touchpoints")[0][0]
    unique_touches = len({e.id for e in events if e.type.startswith("touch.")})
    assert touches == unique_touches
    costs = rows(runtime, "SELECT count(*) FROM campaign_costs")[0][0]
    assert costs == len({e.id for e in events if e.is_campaign_event})


def test_projection_is_restartable_and_idempotent(runtime: Runtime) -> None:
    ingest(runtime, leads=20)
    runtime.projector.batch_size = 50
    count, positions = runtime.projector.run_batch(runtime.projector.positions())
    assert count == 50
    assert runtime.projector.positions() == positions
    assert set(positions.values()) == {runtime.projector.position()}
    assert runtime.projector.position() > 0
    runtime.projector.run()
    snapshot = rows(runtime, "SELECT * FROM lead_state ORDER BY lead_id")
    history = rows(runtime, "SELECT count(*) FROM lead_stage_history")
    # a fresh projector (as after a crash) resumes from the stored position: nothing changes
    from engine.projections.projector import Projector

    again = Projector(runtime.app, runtime.db)
    assert again.run() == 0
    again.close()
    assert rows(runtime, "SELECT * FROM lead_state ORDER BY lead_id") == snapshot
    assert rows(runtime, "SELECT count(*) FROM lead_stage_history") == history


def test_stage_history_keeps_decisions_with_rules_version(runtime: Runtime) -> None:
    ingest(runtime, leads=60, seed=12)
    runtime.projector.run()
    mqls = rows(
        runtime,
        "SELECT decision, score, trigger_event_id FROM lead_stage_history WHERE to_stage = 'mql'",
    )
    assert mqls, "the generated journeys should produce MQL decisions"
    assert all(d == runtime.rules.ref and s is not None and t for d, s, t in mqls)
