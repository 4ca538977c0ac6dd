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
from engine.domain.facts import Fact, chronological
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scorestate import ScoreState, _Greedy, decide_mql
from engine.domain.scoring import DAY_SECONDS, score

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


def _granted_walking_every_touch(
    model: ScoringModel, group: _Greedy, facts: list[Fact], as_of: datetime
) -> float:
    """The several-cap group's greedy as it was before the per-pair stop: every touch of the
    group's types, newest first, each rule re-matched, stopping only once every cap is full."""
    room = dict(group.caps)
    half_life = model.engagement.half_life_days
    granted = 0.0
    for fact in reversed([f for f in chronological(facts) if f.type in group.members]):
        if all(r <= 0 for r in room.values()):
            break
        factor = 1.0
        if half_life is not None:
            age = max(0.0, (as_of - fact.occurred_at).total_seconds() / DAY_SECONDS)
            factor = float(0.5 ** (age / half_life))
        for rule, rkey, tkey in group.members[fact.type]:
            if not rule.matches(fact.type, fact.data):
                continue
            raw = rule.points * (factor if rule.decay else 1.0)
            if raw > 0:
                points = max(0.0, min(room.get(rkey, raw), room.get(tkey, raw), raw))
                if rkey in room:
                    room[rkey] -= points
                if tkey in room:
                    room[tkey] -= points
                granted += points
    return granted


@settings(max_examples=400, deadline=None)
@given(
    models(),
    histories(),
    st.floats(min_value=0, max_value=400, allow_nan=False),
    st.integers(min_value=0, max_value=40),
)
def test_the_greedy_stopping_per_pair_grants_exactly_what_walking_every_touch_does(
    spec: dict[str, Any], facts: list[Fact], later_days: float, repeat: int
) -> None:
    """`ScoreState._granted` walks a (type, rule) pair only while its caps have room: to the
    last bit the sum the walk over every touch gives (the skipped touches are granted 0), at
    the clock and later, fed in any arrival order. `repeat` extra copies of the history's
    touches (new ids, same moments: time ties) fill the caps, so the stop is reached."""
    model = ScoringModel.model_validate(spec)
    extra = [
        Fact(f"{f.event_id}-{n}", f.type, f.source, f.occurred_at, f.data, seq=len(facts) * n + i)
        for n in range(1, 1 + repeat // 10)
        for i, f in enumerate(facts)
    ]
    facts = facts + extra
    state = ScoreState(model)
    state.feed(facts)
    assume(state.multi)
    clock = max(f.occurred_at for f in facts)
    for as_of in (clock, clock + timedelta(days=later_days)):
        for group in state.multi.values():
            want = _granted_walking_every_touch(model, group, facts, as_of)
            assert state._granted(group, as_of) == want
