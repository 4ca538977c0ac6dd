"""The running score (engine/domain/scorestate.py) against the full recomputation
(engine/domain/scoring.py), over random histories arriving in any order (late facts included),
random rules (weights, half-lives, caps, type caps, negatives, `decay: false`) and random moments.

Fit is exactly equal; engagement and total within 0.01 (float sums in another order may round
the last kept place the other way); MQL decisions exactly equal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain.facts import Fact
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scorestate import ScoreState, decide_mql
from engine.domain.scoring import score

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TYPES = ("touch.page_viewed", "touch.email_opened", "touch.ad_clicked", "touch.unsubscribed")
URLS = ("/pricing", "/blog", "/docs")
TOLERANCE = 0.01 + 1e-9

engagement_rules = st.lists(
    st.fixed_dictionaries(
        {
            "types": st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True),
            "points": st.sampled_from([-20.0, -3.5, 0.0, 1.0, 2.0, 3.3, 10.0, 25.0]),
            "cap": st.none() | st.sampled_from([0.0, 1.0, 5.0, 9.9, 20.0, 40.0]),
            "decay": st.booleans(),
            "url": st.none() | st.sampled_from(URLS),
        }
    ),
    max_size=5,
)


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    rules = []
    for n, r in enumerate(draw(engagement_rules)):
        rule: dict[str, Any] = {"id": f"r{n}", "types": r["types"], "points": r["points"]}
        rule["decay"] = r["decay"]
        if r["cap"] is not None:
            rule["cap"] = r["cap"]
        if r["url"] is not None:
            rule["when"] = [{"field": "url", "prefix": r["url"]}]
        rules.append(rule)
    fit_weight = draw(st.sampled_from([0.0, 0.3, 0.5, 0.75, 1.0]))
    threshold = draw(st.sampled_from([5.0, 10.0, 20.0, 33.3, 50.0]))
    return {
        "name": "prop",
        "version": "1",
        "fit": {
            "rules": [
                {"id": "saas", "when": [{"field": "industry", "equals": "saas"}], "points": 60},
                {"id": "big", "when": [{"field": "employees", "gte": 500}], "points": 30},
            ]
        },
        "engagement": {
            "half_life_days": draw(st.none() | st.sampled_from([0.5, 3.0, 30.0, 365.0])),
            "type_caps": draw(
                st.dictionaries(st.sampled_from(TYPES), st.sampled_from([0.0, 4.0, 15.0, 30.0]))
            ),
            "rules": rules,
        },
        "combine": {"fit_weight": fit_weight, "engagement_weight": 1.0 - fit_weight},
        "mql": {"total_at_least": threshold},
    }


fact_specs = st.lists(
    st.tuples(
        st.sampled_from((*TYPES, *TYPES, "lead.profile_updated")),
        st.floats(min_value=0, max_value=200, allow_nan=False),  # days after T0
        st.sampled_from(URLS),
        st.sampled_from(["saas", "retail"]),
        st.sampled_from([10, 800]),
    ),
    min_size=1,
    max_size=30,
)


def arrive(specs: list[tuple[str, float, str, str, int]], order: list[int]) -> list[Fact]:
    """The facts in arrival order `order` (a permutation): late facts wherever it puts them."""
    facts = []
    for seq, i in enumerate(order):
        kind, days, url, industry, employees = specs[i]
        data: dict[str, Any] = (
            {"industry": industry, "employees": employees}
            if kind == "lead.profile_updated"
            else {"url": url}
        )
        at = T0 + timedelta(days=round(days, 3))
        facts.append(Fact(f"e{i}", kind, "prop", at, data, seq=seq))
    return facts


@st.composite
def histories(draw: st.DrawFn) -> list[Fact]:
    specs = draw(fact_specs)
    order = draw(st.permutations(range(len(specs))))
    return arrive(specs, order)


@settings(max_examples=300, deadline=None)
@given(models(), histories(), st.floats(min_value=0, max_value=400, allow_nan=False))
def test_running_score_is_the_full_recomputation(
    spec: dict[str, Any], facts: list[Fact], later_days: float
) -> None:
    model = ScoringModel.model_validate(spec)
    state = ScoreState(model)
    for k in range(1, len(facts) + 1):
        seen = facts[:k]
        state.feed(seen)  # one fact at a time, in arrival order
        clock = max(f.occurred_at for f in seen)
        for as_of in (clock, clock + timedelta(days=later_days)):
            fit, engagement, total = state.totals(as_of)
            full = score(seen, model, as_of)
            assert fit == full.fit
            assert abs(engagement - full.engagement) <= TOLERANCE, (engagement, full)
            assert abs(total - full.total) <= TOLERANCE, (total, full)
            _fit, most, total_most = state.totals(as_of, bound=True)
            assert most >= full.engagement - TOLERANCE  # the bound decisions skip on
            assert total_most >= full.total - TOLERANCE
            decided = decide_mql(state, seen, as_of)
            met = model.mql.met(full.fit, full.engagement, full.total)
            assert (decided is not None) == met
            rough = decide_mql(state, seen, as_of, exact=False)  # what-if's: values not kept
            assert (rough is not None) == met
            if decided is not None:
                # what the decision records is the full score's totals (`explain` re-scores)
                assert decided == score(seen, model, as_of, explain=False)
                assert (decided.fit, decided.engagement, decided.total) == (
                    full.fit,
                    full.engagement,
                    full.total,
                )


@settings(max_examples=100, deadline=None)
@given(models(), histories())
def test_a_state_fed_all_at_once_equals_one_fed_fact_by_fact(
    spec: dict[str, Any], facts: list[Fact]
) -> None:
    model = ScoringModel.model_validate(spec)
    whole, stepwise = ScoreState(model), ScoreState(model)
    whole.feed(facts)
    for k in range(1, len(facts) + 1):
        stepwise.feed(facts[:k])
    clock = max(f.occurred_at for f in facts)
    a, b = whole.totals(clock), stepwise.totals(clock)
    assert a[0] == b[0]
    assert all(abs(x - y) <= TOLERANCE for x, y in zip(a[1:], b[1:], strict=True))


@settings(max_examples=100, deadline=None)
@given(models(), histories())
def test_mql_decisions_record_the_full_score_of_their_moment(
    spec: dict[str, Any], facts: list[Fact]
) -> None:
    """Through the aggregate: every MarketingQualified holds the full recomputation at the
    lead's clock when it was taken, whatever the arrival order."""
    rules = Rules.model_validate(spec)
    lead = Lead.start("prop@example.com", UUID(int=1))
    lead.record(
        event_id="cap",
        event_type="lead.captured",
        source="prop",
        occurred_at=T0 - timedelta(days=1),
        data={"email": "prop@example.com"},
        rules=rules,
    )
    for fact in facts:
        lead.record(
            event_id=fact.event_id,
            event_type=fact.type,
            source=fact.source,
            occurred_at=fact.occurred_at,
            data=dict(fact.data),
            rules=rules,
        )
        for event in lead.collect_events():
            if isinstance(event, Lead.MarketingQualified):
                full = score(lead.facts, rules, lead.clock or T0)
                assert (event.score, event.fit, event.engagement) == (
                    full.total,
                    full.fit,
                    full.engagement,
                )
                assert rules.mql.met(full.fit, full.engagement, full.total)


@settings(max_examples=300, deadline=None)
@given(models(), histories(), st.floats(min_value=0, max_value=400, allow_nan=False))
def test_the_totals_without_lines_are_the_explained_score(
    spec: dict[str, Any], facts: list[Fact], later_days: float
) -> None:
    """`score(..., explain=False)` (read-model rows, decisions, what-if) is exactly the
    explained score's fit, engagement and total, at any moment, earlier ones included."""
    model = ScoringModel.model_validate(spec)
    assume(facts)
    clock = max(f.occurred_at for f in facts)
    for as_of in (min(f.occurred_at for f in facts), clock, clock + timedelta(days=later_days)):
        full = score(facts, model, as_of)
        bare = score(facts, model, as_of, explain=False)
        assert (bare.rules_ref, bare.as_of, bare.fit, bare.engagement, bare.total) == (
            full.rules_ref,
            full.as_of,
            full.fit,
            full.engagement,
            full.total,
        )
        assert bare.lines == ()
