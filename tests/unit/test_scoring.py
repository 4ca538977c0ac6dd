from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.domain.facts import Fact
from engine.domain.rules import Rules, parse_rules
from engine.domain.scoring import Line, best_persona, persona_fits, score
from tests.factory import T0

RULES = parse_rules(
    """
name: t
version: "1"
combine: {fit_weight: 0.4, engagement_weight: 0.6}
fit:
  rules:
    - {id: software, when: [{field: industry, equals: software}], points: 30}
    - {id: big, when: [{field: employees, gte: 500}], points: 30}
    - {id: student, when: [{field: email_domain, suffix: [.edu]}], points: -50}
engagement:
  half_life_days: 30
  type_caps: {touch.page_viewed: 12}
  rules:
    - {id: pricing, types: [touch.page_viewed], when: [{field: url, prefix: /pricing}], points: 10}
    - {id: view, types: [touch.page_viewed], points: 4, cap: 8}
    - {id: unsub, types: [touch.unsubscribed], points: -20, decay: false}
    - {id: form, types: [touch.form_submitted], points: 50}
    - {id: webinar, types: [touch.webinar_attended], points: 40}
mql: {total_at_least: 50}
"""
)


def fact(type_: str, days: float = 0, seq: int = 0, **data: object) -> Fact:
    return Fact(f"e{seq}-{type_}", type_, "t", T0 + timedelta(days=days), dict(data), seq)


def test_fit_points_with_negative_domain_and_clamp() -> None:
    facts = [
        fact("lead.captured", email="x@uni.edu"),
        fact("lead.profile_updated", seq=1, industry="Software", employees=900),
    ]
    result = score(facts, RULES, T0)
    assert result.fit == 10.0  # 30 + 30 - 50
    student = [line for line in result.lines if line.rule == "student"]
    assert student and student[0].event_id == "e0-lead.captured"
    only_student = score(facts[:1], RULES, T0)
    assert only_student.fit == 0.0  # clamped, never negative


def test_decay_halves_points_every_half_life() -> None:
    facts = [fact("touch.form_submitted", days=0, channel="web")]
    assert score(facts, RULES, T0).engagement == 50.0
    assert score(facts, RULES, T0 + timedelta(days=30)).engagement == 25.0
    assert score(facts, RULES, T0 + timedelta(days=60)).engagement == 12.5
    line = score(facts, RULES, T0 + timedelta(days=15)).lines[0]
    assert line.decay == pytest.approx(2**-0.5, abs=1e-6)
    assert line.points == pytest.approx(50 * 2**-0.5)


def test_rule_cap_and_type_cap_keep_the_newest_touches() -> None:
    views = [
        fact("touch.page_viewed", days=i / 10, seq=i, channel="web", url="/blog") for i in range(5)
    ]
    result = score(views, RULES, T0 + timedelta(days=0.4))
    view_lines = [line for line in result.lines if line.rule == "view"]
    assert sum(line.points for line in view_lines) == pytest.approx(8.0)  # rule cap 8
    assert view_lines[-1].points > 0 and view_lines[0].points == 0  # oldest dropped
    assert "capped" in view_lines[0].note
    pricing = [
        fact("touch.page_viewed", days=0, seq=i, channel="web", url="/pricing") for i in range(3)
    ]
    result = score(pricing, RULES, T0)
    # 3 x (pricing 10 + view 4) = 42 raw; view capped at 8, then the type cap of 12 binds
    assert result.engagement == pytest.approx(12.0)


def test_negative_points_are_not_capped_or_decayed() -> None:
    facts = [
        fact("touch.form_submitted", days=0, seq=0, channel="web"),
        fact("touch.unsubscribed", days=0, seq=1, channel="email"),
    ]
    result = score(facts, RULES, T0 + timedelta(days=30))
    assert result.engagement == pytest.approx(25.0 - 20.0)
    unsub = next(line for line in result.lines if line.rule == "unsub")
    assert unsub.decay == 1.0 and unsub.points == -20


def test_future_facts_are_ignored_and_total_combines_with_weights() -> None:
    facts = [
        fact("lead.profile_updated", seq=0, industry="software", employees=900),
        fact("touch.webinar_attended", days=0, seq=1, channel="webinar"),
        fact("touch.form_submitted", days=10, seq=2, channel="web"),
    ]
    early = score(facts, RULES, T0)
    assert early.engagement == 40.0 and early.fit == 60.0
    assert early.total == pytest.approx(0.4 * 60 + 0.6 * 40)
    assert all(line.event_id != "e2-touch.form_submitted" for line in early.lines)


def test_explanation_adds_up_and_scoring_is_deterministic() -> None:
    facts = [
        fact("touch.page_viewed", days=i, seq=i, channel="web", url=f"/p{i % 3}") for i in range(20)
    ]
    facts.append(fact("lead.profile_updated", days=1, seq=99, industry="software"))
    a = score(facts, RULES, T0 + timedelta(days=25))
    b = score(list(reversed(facts)), RULES, T0 + timedelta(days=25))
    assert a == b
    assert a.engagement == pytest.approx(
        sum(x.points for x in a.lines if x.part == "engagement"), abs=0.01
    )
    assert a.fit == sum(x.points for x in a.lines if x.part == "fit")


def test_engagement_above_100_is_clamped_to_exactly_100() -> None:
    facts = [
        fact("touch.form_submitted", seq=0, channel="web"),
        fact("touch.webinar_attended", seq=1, channel="web"),
        fact("touch.form_submitted", seq=2, channel="web"),
    ]
    result = score(facts, RULES, T0)
    assert sum(line.points for line in result.lines) == pytest.approx(140.0)  # 50 + 40 + 50 raw
    assert result.engagement == 100.0  # clamped at the top
    assert result.total == 60.0  # fit 0 x 0.4 + 100 x 0.6


def test_personas_read_the_profile_as_of_the_moment_asked_with_its_origin(rules: Rules) -> None:
    """A later profile change does not leak into an earlier moment, and each persona line
    names the event that supplied the attribute."""
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    facts = [
        Fact("p1", "lead.profile_updated", "urn:test", t0, {"seniority": "vp"}),
        Fact("p2", "lead.profile_updated", "urn:test", t0 + timedelta(days=10),
             {"seniority": "individual"}),
    ]  # fmt: skip
    early, late = t0 + timedelta(days=1), t0 + timedelta(days=11)
    best = best_persona(facts, rules.personas, early)
    assert best is not None and (best.persona, best.fit) == ("decision-maker", 70.0)
    assert [(line.rule, line.event_id) for line in best.lines] == [("exec-seniority", "p1")]
    later = best_persona(facts, rules.personas, late)
    assert later is not None and (later.persona, later.fit) == ("user", 60.0)
    assert [(x.rule, x.event_id) for x in later.lines] == [("individual-contributor", "p2")]
    fits = persona_fits(facts, rules.personas, early)
    assert [(f.persona, f.fit) for f in fits] == [("decision-maker", 70.0), ("champion", 0.0),
                                                  ("user", 0.0)]  # fmt: skip
    assert [line.event_id for line in fits[0].lines] == ["p1"]


def test_every_line_of_a_score_by_hand() -> None:
    """Each line of the explanation, by hand, as of day 30 (half-life 30 days):
    fit from the profile of day 0 (the change on day 40 is later): software 30 + big 30 = 60.
    Engagement, newest first: form 50; blog views on day 30: 4, 4 (view's cap of 8 is then
    full), 0 (capped by the rule cap, nothing left); the pricing view of day 20 (decay
    2^(-10/30) = 0.793701): pricing 7.94 raw but only 4 left of the page-view type cap of 12
    (capped by the type cap), its view 0 (the rule cap is spent). 50 + 4 + 4 + 4 = 62.
    Total 0.4 * 60 + 0.6 * 62 = 61.2."""
    day = [T0 + timedelta(days=d) for d in range(41)]
    facts = [
        fact("lead.profile_updated", 0, 1, industry="software", employees=600),
        fact("lead.profile_updated", 40, 2, employees=100),
        fact("touch.page_viewed", 20, 3, channel="web", url="/pricing"),
        fact("touch.page_viewed", 30, 4, channel="web", url="/blog"),
        fact("touch.page_viewed", 30, 5, channel="web", url="/blog"),
        fact("touch.page_viewed", 30, 6, channel="web", url="/blog"),
        fact("touch.form_submitted", 30, 7, channel="web"),
    ]
    s = score(facts, RULES, day[30])
    pv, form = "touch.page_viewed", "touch.form_submitted"
    decay = round(2 ** (-10 / 30), 6)
    assert decay == 0.793701
    assert s.lines == (
        Line("fit", "software", "e1-lead.profile_updated", None, None, 30, 1.0, 30,
             "industry='software'"),
        Line("fit", "big", "e1-lead.profile_updated", None, None, 30, 1.0, 30, "employees=600"),
        Line("engagement", "pricing", "e3-touch.page_viewed", pv, day[20], 10, decay, 4.0,
             "capped by type cap"),
        Line("engagement", "view", "e3-touch.page_viewed", pv, day[20], 4, decay, 0.0,
             "capped by rule cap (nothing left)"),
        Line("engagement", "view", "e4-touch.page_viewed", pv, day[30], 4, 1.0, 0.0,
             "capped by rule cap (nothing left)"),
        Line("engagement", "view", "e5-touch.page_viewed", pv, day[30], 4, 1.0, 4.0, ""),
        Line("engagement", "view", "e6-touch.page_viewed", pv, day[30], 4, 1.0, 4.0, ""),
        Line("engagement", "form", "e7-touch.form_submitted", form, day[30], 50, 1.0, 50.0, ""),
    )  # fmt: skip
    assert (s.rules_ref, s.as_of, s.fit, s.engagement, s.total) == (
        RULES.ref, day[30], 60.0, 62.0, 61.2)  # fmt: skip
    # the profile change of day 40 counts from then on
    assert score(facts, RULES, day[40]).fit == 30.0


def test_scores_are_rounded_to_two_decimals() -> None:
    """One page view 7 days old: 4 * 2^(-7/30) = 3.402..., shown as 3.4; total 0.6 of it."""
    s = score([fact("touch.page_viewed", 0, 1, channel="web", url="/blog")], RULES,
              T0 + timedelta(days=7))  # fmt: skip
    raw = 4 * 2 ** (-7 / 30)
    assert 3.40 < raw < 3.41 and raw != round(raw, 2)
    assert (s.engagement, s.total) == (round(raw, 2), round(round(raw, 2) * 0.6, 2))
    assert s.lines[0].decay == round(2 ** (-7 / 30), 6)


FRACTIONS = parse_rules(
    """
name: fractions
version: "1"
combine: {fit_weight: 0.4, engagement_weight: 0.6}
fit:
  rules:
    - {id: odd, when: [{field: industry, equals: software}, {field: country, equals: US}],
       points: 12.345}
engagement:
  half_life_days: null
  rules:
    - {id: view, types: [touch.page_viewed], points: 0.5, cap: 0.5}
personas:
  - id: tiny
    rules:
      - {id: t, when: [{field: industry, equals: software}], points: 0.505}
mql: {total_at_least: 50}
"""
)


def test_fractional_points_round_to_two_decimals_and_small_grants_are_capped() -> None:
    facts = [
        fact("lead.profile_updated", 0, 1, industry="software", country="US"),
        fact("touch.page_viewed", 1, 2, channel="web"),
        fact("touch.page_viewed", 2, 3, channel="web"),
    ]
    s = score(facts, FRACTIONS, T0 + timedelta(days=3))
    # fit 12.345 shown as 12.35; total 0.4 * 12.35 + 0.6 * 0.5 = 5.24
    assert (s.fit, s.engagement, s.total) == (12.35, 0.5, 5.24)
    assert s.lines[0].note == "industry='software', country='US'"
    # the older view finds the cap of 0.5 spent: capped to nothing, even for a grant below 1
    assert [(x.points, x.note) for x in s.lines[1:]] == [
        (0.0, "capped by rule cap (nothing left)"), (0.5, "")]  # fmt: skip
    best = best_persona(facts, FRACTIONS.personas, T0 + timedelta(days=3))
    assert best is not None and (best.persona, best.fit) == ("tiny", 0.51)  # above 0, below 1


def test_the_total_is_rounded_to_two_decimals_too() -> None:
    """A page view 0.1 day old: 4 * 2^(-0.1/30) = 3.9908 -> 3.99; total 0.6 * 3.99 = 2.394 ->
    2.39."""
    s = score([fact("touch.page_viewed", 0, 1, channel="web", url="/blog")], RULES,
              T0 + timedelta(days=0.1))  # fmt: skip
    assert (s.engagement, s.total) == (3.99, 2.39)
