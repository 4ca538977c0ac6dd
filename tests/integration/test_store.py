"""The event store on a real PostgreSQL: durable, idempotent, tracked, decisions included."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.postgres.keyfile import load_master_key
from engine.runtime import Runtime
from engine.services.application import LeadEngine
from tests.factory import captured, icp_profile, touch


def test_events_survive_a_new_application_instance(runtime: Runtime) -> None:
    runtime.app.ingest(
        [
            captured("k1"),
            icp_profile("k1"),
            touch("touch.form_submitted", "k1", form="demo-request"),
        ]
    )
    s = runtime.settings
    master = load_master_key(s.master_key, s.master_key_file, s.home)
    fresh = LeadEngine(rules=runtime.rules, env=runtime.db.eventsourcing_env(), master_key=master)
    try:
        lead = fresh.get_lead("k1")
        assert lead.stage == "mql" and len(lead.facts) == 3
    finally:
        fresh.close()


def test_redelivery_writes_no_rows(runtime: Runtime) -> None:
    events = [validate_event(e) for e in generate(15, seed=4)]
    runtime.app.ingest(events)
    head = runtime.app.recorder.max_notification_id()
    result = runtime.app.ingest(events)
    assert result.accepted == 0
    assert runtime.app.recorder.max_notification_id() == head


def test_tracking_commits_with_events_and_a_replayed_position_writes_nothing(
    runtime: Runtime,
) -> None:
    runtime.app.ingest([captured("k2")], tracking=Tracking("upstream.0", 7))
    assert runtime.app.max_position("upstream.0") == 7
    head = runtime.app.recorder.max_notification_id()
    with pytest.raises(IntegrityError):
        runtime.app.ingest(
            [touch("touch.page_viewed", "k2", url="/")], tracking=Tracking("upstream.0", 7)
        )
    assert runtime.app.recorder.max_notification_id() == head
    # the failed batch did not leave a half-applied lead in the cache
    assert len(runtime.app.get_lead("k2").facts) == 1


def test_a_batch_loads_its_stored_leads_in_one_query_as_the_repository_would(
    runtime: Runtime,
) -> None:
    events = [validate_event(e) for e in generate(30, seed=5)]
    app = runtime.app
    for start in range(0, len(events), 50):  # every batch starts with nothing cached
        app.clear_cache()
        app.ingest(events[start : start + 50])
    app.clear_cache()
    touched: dict[Any, Any] = app._create_unknown(events)  # one query for every stored one
    leads = {app.lead_id(e.subject) for e in events if e.type.startswith(("lead.", "touch."))}
    assert leads <= set(touched)
    for agg_id, loaded in touched.items():
        app.clear_cache()
        assert vars(loaded) == vars(app.repository.get(agg_id)), agg_id
