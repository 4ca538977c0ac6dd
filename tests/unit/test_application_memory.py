from __future__ import annotations

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.services.application import LeadEngine


def test_ingest_counts_and_redelivery_changes_nothing(memory_app: LeadEngine) -> None:
    events = [validate_event(e) for e in generate(20, seed=3)]
    first = memory_app.ingest(events)
    unique = len({e.id for e in events})
    assert first.accepted == unique
    assert first.duplicates == len(events) - unique
    head = memory_app.recorder.max_notification_id()
    again = memory_app.ingest(events)
    assert again.accepted == 0 and again.duplicates == len(events)
    assert memory_app.recorder.max_notification_id() == head


def test_same_events_give_same_decisions(rules) -> None:  # type: ignore[no-untyped-def]
    events = [validate_event(e) for e in generate(30, seed=11)]
    outcomes = []
    for _ in range(2):
        app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        app.ingest(events)
        keys = sorted({e.subject for e in events if e.is_lead_event})
        outcomes.append(
            [(k, app.get_lead(k).stage, app.get_lead(k).current_score(rules).total) for k in keys]
        )
        app.close()
    assert outcomes[0] == outcomes[1]
