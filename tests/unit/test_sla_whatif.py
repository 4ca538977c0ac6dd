"""SLA timers in business hours at chosen moments, and the what-if replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from engine.domain.contract import validate_event
from engine.domain.facts import Fact
from engine.domain.generator import generate
from engine.domain.rules import Rules, Sla, parse_rules
from engine.domain.sla import Timer, add_business_hours, business_hours_between, sla_state
from engine.domain.whatif import facts_from_log, replay
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV

SLA = Sla(first_touch_hours=4, decision_hours=16, at_risk_after=0.75)
FRIDAY_4PM = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def touch(when: datetime, type_: str = "touch.call_logged", rep: str = "ana") -> Fact:
    return Fact(f"t-{when.isoformat()}", type_, "urn:test", when, {"rep": rep})


def test_business_hours_skip_nights_and_weekends() -> None:
    assert add_business_hours(FRIDAY_4PM, 4, SLA.business_hours) == at(9, 12)  # Mon 12:00
    assert add_business_hours(at(7, 10), 1, SLA.business_hours) == at(9, 10)  # Sat -> Mon
    assert add_business_hours(at(9, 8), 8, SLA.business_hours) == at(9, 17)
    assert business_hours_between(FRIDAY_4PM, at(9, 11), SLA.business_hours) == 3.0
    ny = Sla(business_hours={"timezone": "America/New_York"}).business_hours  # type: ignore[arg-type]
    assert add_business_hours(at(9, 14), 1, ny) == at(9, 15)  # 09:00 EST = 14:00 UTC


def test_timers_pending_at_risk_met_and_breached_at_chosen_moments() -> None:
    routings = [(FRIDAY_4PM, "ana", "main")]
    facts = [touch(at(9, 11, 30))]
    state = sla_state([], routings, SLA, at(9, 9, 30))
    assert state is not None
    assert (state.first_touch.status, state.first_touch.due) == ("pending", at(9, 12))
    assert sla_state([], routings, SLA, at(9, 11)).first_touch.status == "at_risk"  # type: ignore[union-attr]
    assert sla_state([], routings, SLA, at(9, 12, 1)).first_touch.status == "breached"  # type: ignore[union-attr]
    done = sla_state(facts, routings, SLA, at(9, 12, 1))
    assert done is not None and done.first_touch.status == "met"
    # the same touch, seen from before it happened, is not done yet
    assert sla_state(facts, routings, SLA, at(9, 11, 0)).first_touch.status == "at_risk"  # type: ignore[union-attr]
    late = sla_state([touch(at(9, 13))], routings, SLA, at(10, 9))
    assert late is not None and late.first_touch.status == "breached"
    decided = Fact("d", "sales.accepted", "urn:test", at(10, 9), {})
    state = sla_state([decided], routings, SLA, at(20, 9))
    assert state is not None and state.decision.status == "met"  # due Tue 16:00
    assert state.decision.due == at(10, 16)
    assert sla_state([], routings, SLA, at(6, 15)) is None  # not routed yet then


def test_owner_only_ignores_other_reps_touches() -> None:
    strict = Sla(owner_only=True)
    routings = [(FRIDAY_4PM, "ana", "main")]
    state = sla_state([touch(at(9, 10), rep="bo")], routings, strict, at(9, 13))
    assert state is not None and state.first_touch.status == "breached"


def _app(rules: Rules | None = None) -> LeadEngine:
    app = LeadEngine(rules=rules, env=POPO_ENV)
    app.ingest([validate_event(json.loads(json.dumps(e))) for e in generate(150, seed=5)])
    return app


def test_whatif_under_the_same_rules_changes_nothing_and_matches_the_store() -> None:
    app = _app()
    result = replay(facts_from_log(app), app.rules, app.rules)
    doc = result.summary()
    assert doc["leads_changed"] == 0 and doc["mql_old"] == doc["mql_new"] > 0
    for key, outcome in list(result.old.items())[:50]:
        assert outcome.stage == app.get_lead(key).stage  # the replay is the real decision path


def test_whatif_lower_threshold_qualifies_more_and_since_limits_it() -> None:
    app = _app()
    text = (
        "name: looser\nversion: '2'\nfit: "
        + json.dumps(app.rules.fit.model_dump(mode="json", by_alias=True, exclude_none=True))
        + "\nengagement: "
        + json.dumps(app.rules.engagement.model_dump(mode="json", by_alias=True, exclude_none=True))
        + "\nmql: {total_at_least: 30, fit_at_least: 20}\n"
    )
    looser = parse_rules(text)
    doc = replay(facts_from_log(app), app.rules, looser).summary(limit=1000)
    assert doc["mql_new"] > doc["mql_old"]
    assert doc["leads_changed"] == len(doc["changed"]) > 0
    assert all(c["new_mql"] for c in doc["changed"] if not c["old_mql"])
    later = replay(
        facts_from_log(app), app.rules, looser, since=datetime(2030, 1, 1, tzinfo=UTC)
    ).summary()
    assert later["leads_changed"] == 0  # the new rules never got to decide
    assert sum(s["old"] for s in doc["stages"]) == sum(s["new"] for s in doc["stages"])


def test_sla_boundaries_are_exact() -> None:
    """On the due moment itself: done then is met, not done yet is not breached; a touch at
    the very moment of `as_of` counts as done; the timers carry their names and moments."""
    routings = [(FRIDAY_4PM, "ana", "main")]
    due = at(9, 12)  # Fri 16:00 + 4 business hours (nights and weekend skipped)
    on_time = sla_state([touch(due)], routings, SLA, due)
    assert on_time is not None
    assert on_time.first_touch == Timer("first_touch", due, due, "met")
    assert on_time.decision == Timer("decision", at(10, 16), None, "pending")  # 16 h: Tue 16:00
    not_yet = sla_state([], routings, SLA, due)
    assert not_yet is not None and not_yet.first_touch == Timer("first_touch", due, None, "at_risk")
    late = sla_state([], routings, SLA, at(9, 12, 1))
    assert late is not None and late.first_touch == Timer("first_touch", due, None, "breached")
    # at risk from 75 % of the allowance used (3 of 4 business hours: Mon 11:00), not before
    assert sla_state([], routings, SLA, at(9, 11)).first_touch.status == "at_risk"  # type: ignore[union-attr]
    assert sla_state([], routings, SLA, at(9, 10, 59)).first_touch.status == "pending"  # type: ignore[union-attr]


def test_business_hours_between_an_empty_or_backward_span_is_zero() -> None:
    bh = SLA.business_hours
    assert business_hours_between(at(9, 10), at(9, 10), bh) == 0.0
    assert business_hours_between(at(9, 11), at(9, 10), bh) == 0.0
    assert business_hours_between(at(9, 9), at(9, 10, 30), bh) == 1.5
    # a span ending exactly when a day opens holds none of that day
    assert business_hours_between(at(6, 17), at(9, 9), bh) == 0.0


def test_sla_rounds_and_facts_at_the_very_moment_of_routing_count() -> None:
    strict = Sla(first_touch_hours=4, decision_hours=16, owner_only=True)
    routings = [(FRIDAY_4PM, "ana", "main")]
    facts = [touch(FRIDAY_4PM, rep="ana"), Fact("d", "sales.accepted", "urn:test", FRIDAY_4PM, {})]
    state = sla_state(facts, routings, strict, FRIDAY_4PM)  # routed at this very moment
    assert state is not None
    assert (state.owner, state.queue, state.routed_at) == ("ana", "main", FRIDAY_4PM)
    assert (state.first_touch.done_at, state.first_touch.status) == (FRIDAY_4PM, "met")
    assert (state.decision.done_at, state.decision.status) == (FRIDAY_4PM, "met")
    # the owner's own touch counts under owner_only (another rep's would not)
    later = sla_state([touch(at(9, 10), rep="ana")], routings, strict, at(9, 11))
    assert later is not None and later.first_touch.done_at == at(9, 10)


def test_business_hours_follow_the_local_day_and_keep_the_callers_zone() -> None:
    from zoneinfo import ZoneInfo

    la = Sla(business_hours={"timezone": "America/Los_Angeles"}).business_hours  # type: ignore[arg-type]
    # Tue 00:30 UTC is still Monday 16:30 in Los Angeles: half an hour left that day
    start = datetime(2026, 2, 3, 0, 30, tzinfo=UTC)
    assert add_business_hours(start, 1, la) == datetime(2026, 2, 3, 17, 30, tzinfo=UTC)
    paris = ZoneInfo("Europe/Paris")
    due = add_business_hours(datetime(2026, 2, 2, 10, tzinfo=paris), 1, la)
    assert due.isoformat() == "2026-02-02T19:00:00+01:00"  # 10:00 PST, told in Paris time
    with pytest.raises(ValueError, match=r"^SLA allowance too long$"):
        add_business_hours(start, 10**6, la)
