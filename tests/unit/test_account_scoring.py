"""Account fit from firmographics, engagement rolled up with per-lead caps, MQA decisions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from engine.domain.accounts.profile import AccountProfile
from engine.domain.accounts.scoring import Member, decide_mqa, score, unmet
from engine.domain.rules import load_rules

RULES = load_rules().accounts
T0 = datetime(2026, 3, 1, tzinfo=UTC)
ICP = AccountProfile(
    "a1",
    name="Acme",
    industry="SaaS",
    employees=800,
    annual_revenue=Decimal("60000000"),
    country="US",
    tier=1,
)


def test_fit_points_each_explained() -> None:
    result = score(ICP, [], RULES)
    fit = {p.rule: p.points for p in result.points if p.part == "fit"}
    assert fit == {
        "account-industry-software": 35,
        "account-midmarket-enterprise": 30,
        "account-revenue-large": 15,
        "account-territory-core": 10,
        "account-target-tier-1": 10,
    }
    assert result.fit == 100 and result.engagement == 0 and result.total == 50
    assert any("industry=SaaS" in p.reason for p in result.points)


def test_one_busy_lead_counts_at_most_the_per_lead_cap() -> None:
    result = score(ICP, [Member("l1", 95.0), Member("l2", 5.0)], RULES)
    engagement = [p for p in result.points if p.part == "engagement"]
    assert [(p.rule, p.points) for p in engagement] == [("lead:l1", 40.0), ("lead:l2", 5.0)]
    assert "capped at 40" in engagement[0].reason
    assert result.engagement == 45 and result.engaged == 1 and result.members == 2
    assert result.total == round(100 * 0.5 + 45 * 0.5, 2)


def test_engagement_is_clamped_and_independent_of_member_order() -> None:
    members = [Member(f"l{i}", 50.0) for i in range(5)]
    a = score(ICP, members, RULES)
    b = score(ICP, list(reversed(members)), RULES)
    assert a == b and a.engagement == 100


def test_mqa_needs_every_threshold() -> None:
    one = score(ICP, [Member("l1", 60.0)], RULES)
    assert unmet(one, RULES) == ["engaged leads 1 < 2"]
    assert decide_mqa(one, RULES, ref="default@2026.1", trigger="e1", at=T0) is None
    two = score(ICP, [Member("l1", 60.0), Member("l2", 30.0)], RULES)
    decision = decide_mqa(two, RULES, ref="default@2026.1", trigger="e9", at=T0)
    assert decision is not None
    assert (decision.rules, decision.trigger, decision.at) == ("default@2026.1", "e9", T0)
    assert "2 engaged of 2 leads" in decision.reason
    poor = score(
        AccountProfile("a2", industry="retail"), [Member("l1", 90), Member("l2", 90)], RULES
    )
    assert unmet(poor, RULES) == ["total 40 < 60", "fit 0 < 40"]
