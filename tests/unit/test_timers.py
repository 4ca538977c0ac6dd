"""The timer service's moments (engine/services/timers.py): pure, in business hours, closed by a
touch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from engine.aggregates.lead import Lead
from engine.domain.rules import Rules, Sla
from engine.domain.sla import add_business_hours
from engine.services.timers import moments

SLA = Sla(first_touch_hours=4, decision_hours=16, at_risk_after=0.75)
FRIDAY_4PM = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)


def routed_lead(rules: Rules) -> Lead:
    lead = Lead.start("crm-1", uuid.uuid4())
    lead.route(owner="ana", queue="q", strategy="round_robin", why="test", trigger="t-1",
               at=FRIDAY_4PM)  # fmt: skip
    return lead


def test_moments_are_in_business_hours_in_time_order(rules: Rules) -> None:
    lead = routed_lead(rules)
    got = [(m.timer, m.status, m.at) for m in moments(lead, SLA, FRIDAY_4PM)]
    bh = SLA.business_hours
    assert got == sorted(
        [
            ("first_touch", "at_risk", add_business_hours(FRIDAY_4PM, 3, bh)),
            ("first_touch", "breached", add_business_hours(FRIDAY_4PM, 4, bh)),
            ("decision", "at_risk", add_business_hours(FRIDAY_4PM, 12, bh)),
            ("decision", "breached", add_business_hours(FRIDAY_4PM, 16, bh)),
        ],
        key=lambda m: m[2],
    )
    assert got[0][2] == datetime(2026, 3, 9, 11, 0, tzinfo=UTC)  # Monday: the weekend skipped


def test_a_recorded_alert_is_not_due_again_and_a_touch_closes_its_timer(rules: Rules) -> None:
    lead = routed_lead(rules)
    first = moments(lead, SLA, FRIDAY_4PM)[0]
    assert lead.alert_sla(timer=first.timer, status=first.status, at=first.at, due=first.due,
                          routed_at=first.routed_at, owner="ana", queue="q")  # fmt: skip
    assert not lead.alert_sla(timer=first.timer, status=first.status, at=first.at,
                              due=first.due, routed_at=first.routed_at, owner="ana",
                              queue="q")  # fmt: skip
    left = moments(lead, SLA, first.at)
    assert (first.timer, first.status) not in {(m.timer, m.status) for m in left}
    lead.record(event_id="call-1", event_type="touch.call_logged", source="urn:test",
                occurred_at=first.at, data={"rep": "ana", "channel": "phone",
                "direction": "outbound", "outcome": "connected"}, rules=rules)  # fmt: skip
    later = moments(lead, SLA, first.due)  # the touch is known by then, dated before the due
    assert {m.timer for m in later} == {"decision"}
