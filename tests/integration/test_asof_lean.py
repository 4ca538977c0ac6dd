"""As-of replay on the lean fold (engine/services/asof_read.py) reads every lead exactly as the
aggregate folded from its events (`asof.fold(asof.recorded_by(...))`) at every moment: stage,
path, stage moments, facts, MQL decisions, routing, SLA alerts, erasure and the explained score,
on real PostgreSQL, with sealed personal data, late facts and a forgotten lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.domain import asof
from engine.domain.contract import validate_event
from engine.domain.errors import LeadEngineError, LeadNotFound
from engine.domain.generator import generate
from engine.runtime import Runtime
from engine.services.asof_read import lead_as_of

SAME = (
    "key", "stage", "reached", "path", "facts", "qualified", "mql_rounds", "anomalies", "clock",
    "owner", "owner_source", "routing_open", "queue", "routings", "routing_failure",
    "sla_alerts", "erased_at", "walked", "seen",
)  # fmt: skip


def test_the_lean_as_of_reads_as_the_aggregate_at_every_moment(runtime: Runtime) -> None:
    app = runtime.app
    events = [validate_event(raw) for raw in generate(40, seed=11)]
    events.sort(key=lambda e: e.occurred_at)
    late = events[::7]  # every seventh arrives last: late facts walked in event time
    events = [e for e in events if e not in late] + late
    moments = []
    for start in range(0, len(events), 60):
        app.ingest(events[start : start + 60])
        moments.append(datetime.now(UTC))
    keys = sorted({e.subject for e in events if e.is_lead_event})
    forgotten = keys[0]
    app.forget(forgotten, reason="ticket 1", by="dpo", at=datetime(2026, 6, 1, tzinfo=UTC))
    moments.append(datetime.now(UTC))
    compared = 0
    for key in keys:
        stored = app.lead_events(key)
        for moment in [stored[0].timestamp - timedelta(seconds=1), *moments]:
            kept = asof.recorded_by(stored, moment)
            try:
                want = asof.fold(kept, key, moment)
            except LeadEngineError:
                with pytest.raises(LeadEngineError) as got:
                    lead_as_of(app, key, moment)
                assert str(got.value) == f"lead {key!r} was not known at {moment.isoformat()}"
                continue
            lean = lead_as_of(app, key, moment)
            for name in SAME:
                assert getattr(lean, name) == getattr(want, name), (key, moment, name)
            assert lean.version == want.version
            assert _links(lean) == _links(want)
            assert lean.current_score(runtime.rules) == want.current_score(runtime.rules)
            compared += 1
    assert compared > len(keys)  # most leads at several moments
    kinds = {type(e).__name__ for key in keys for e in app.lead_events(key)}
    assert {"MarketingQualified", "StageChanged", "Erased", "FactRecorded"} <= kinds
    with pytest.raises(LeadNotFound):
        lead_as_of(app, "nobody@example.com", datetime.now(UTC))


def _links(lead: Any) -> list[tuple[Any, ...]]:
    return [(link.relation, link.other_id, link.event_id) for link in lead.links]
