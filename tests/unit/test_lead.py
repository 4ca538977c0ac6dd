from __future__ import annotations

from engine.aggregates.lead import Lead, Recorded, lead_id
from engine.contract import Envelope
from engine.rules import Rules
from tests.factory import captured, ev, icp_profile, touch


def record(lead: Lead, env: Envelope, rules: Rules) -> Recorded:
    return lead.record(
        event_id=env.id,
        event_type=env.type,
        source=env.source,
        occurred_at=env.occurred_at,
        data=dict(env.data),
        rules=rules,
    )


def test_id_is_derived_from_the_upstream_key() -> None:
    assert Lead(key="crm-1").id == lead_id("crm-1") == Lead(key="crm-1").id
    assert lead_id("crm-1") != lead_id("crm-2")


def test_same_cloudevent_id_twice_is_a_no_op(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    env = captured()
    assert record(lead, env, rules) is Recorded.ACCEPTED
    version = lead.version
    assert record(lead, env, rules) is Recorded.DUPLICATE
    assert lead.version == version and len(lead.facts) == 1


def test_unknown_lead_starts_anonymous_and_late_capture_promotes(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    record(lead, touch("touch.page_viewed", url="/"), rules)
    assert lead.stage == "anonymous"
    record(lead, captured(days=-1), rules)  # captured happened earlier, arrived later
    assert lead.stage == "lead"


def test_mql_is_a_recorded_decision_with_rules_score_and_trigger(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    record(lead, captured(), rules)
    record(lead, icp_profile(), rules)
    assert lead.stage == "lead"
    trigger = touch("touch.form_submitted", form="demo-request")
    record(lead, trigger, rules)
    assert lead.stage == "mql"
    decisions = [e for e in lead.collect_events() if isinstance(e, Lead.MarketingQualified)]
    assert len(decisions) == 1
    d = decisions[0]
    assert d.rules_version == rules.ref
    assert d.trigger_event_id == trigger.id
    assert d.score >= (rules.mql.total_at_least or 0) and d.fit >= (rules.mql.fit_at_least or 0)
    assert d.score == lead.current_score(rules).total


def test_nonsense_fact_is_kept_and_flagged_not_applied(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    record(lead, captured(), rules)
    lost = ev("deal.lost", data={"reason": "price"})
    assert record(lead, lost, rules) is Recorded.ACCEPTED
    assert lead.stage == "lead"
    assert lead.anomalies == 1 and lead.facts[-1].event_id == lost.id
    flags = [e for e in lead.collect_events() if isinstance(e, Lead.AnomalyFlagged)]
    assert flags and "deal.lost while lead" in flags[0].reason


def test_rejection_recycles_and_lead_can_requalify(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    for env in (captured(), icp_profile(), touch("touch.form_submitted", form="demo-request")):
        record(lead, env, rules)
    assert lead.stage == "mql"
    record(lead, ev("sales.rejected", data={"reason": "timing"}, days=1), rules)
    assert lead.stage == "recycled"
    record(lead, touch("touch.webinar_attended", channel="webinar", days=40), rules)
    record(lead, touch("touch.form_submitted", form="demo-request", days=40), rules)
    assert lead.stage == "mql" and lead.mql_rounds == 2


def test_owner_comes_from_owner_assigned(rules: Rules) -> None:
    lead = Lead(key="lead-1")
    record(lead, ev("owner.assigned", data={"owner": "ana"}), rules)
    assert lead.owner == "ana"
