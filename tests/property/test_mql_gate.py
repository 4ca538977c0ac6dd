"""The MQL gate (engine/domain/scorestate.py `Gate`) skips a decision's bound check while the
bound at the last check, plus the positive points fed since, cannot meet the rule. For random
histories arriving in any order (late facts, profile changes), random scoring (negative points
that decay or not, rule and type caps, half-lives, weights) and random MQL rules (any mix of
total, fit and engagement thresholds, all or any), decided at moments in any order:

- a skip is sound: whenever the gate skips, the rule is not met even at the state's upper
  bound (what `decide_mql` checked before the gate), so not by the full recomputation either;
- decisions are those of the full recomputation, taken at the same moments, with or without
  the gate, for one rule and for a second rule decided on the same running score (what-if);
- `ScoreState.settled` (what-if's final score) is the full recomputation's, exactly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.domain.facts import Fact
from engine.domain.rules import ScoringModel
from engine.domain.scorestate import EPSILON, ScoreState, decide_mql
from engine.domain.scoring import score
from tests.property.test_incremental_scoring import histories, models

thresholds = st.none() | st.sampled_from([0.0, 5.0, 10.0, 20.0, 29.99, 30.0, 45.0, 60.0, 100.0])


@st.composite
def mql_rules(draw: st.DrawFn) -> dict[str, Any]:
    total, fit, engagement = draw(thresholds), draw(thresholds), draw(thresholds)
    if (total, fit, engagement) == (None, None, None):
        total = draw(st.sampled_from([5.0, 33.3, 50.0]))
    return {
        "total_at_least": total,
        "fit_at_least": fit,
        "engagement_at_least": engagement,
        "require": draw(st.sampled_from(["all", "any"])),
    }


def _model(spec: dict[str, Any], rule: dict[str, Any], version: str) -> ScoringModel:
    return ScoringModel.model_validate({**spec, "version": version, "mql": rule})


@settings(max_examples=400, deadline=None)
@given(
    models(),
    mql_rules(),
    mql_rules(),
    histories(),
    st.lists(st.floats(min_value=0, max_value=90, allow_nan=False), min_size=30, max_size=30),
)
def test_the_gate_never_changes_a_decision_or_its_moment(
    spec: dict[str, Any],
    one_rule: dict[str, Any],
    other_rule: dict[str, Any],
    facts: list[Fact],
    extra_days: list[float],
) -> None:
    one, other = _model(spec, one_rule, "1"), _model(spec, other_rule, "2")
    gated = ScoreState(one)  # one running score for both rules, as what-if's pair shares
    event(f"gate used: {gated.plan.gated}")
    skipped = 0
    for k in range(1, len(facts) + 1):
        seen = facts[:k]
        gated.feed(seen)
        clock = max(f.occurred_at for f in seen)
        # the lead's clock, or a later moment (decay only): moments in any order
        as_of = clock + timedelta(days=extra_days[k - 1] if k % 3 == 0 else 0.0)
        for model in (one, other):
            rule = model.mql
            gate = gated.gate
            at = as_of.timestamp()
            skips = gate is not None and at >= gate.at and gated.added < gate.headroom(rule)
            if skips:
                skipped += 1
                fit, most, total_most = gated.totals(as_of, bound=True)
                assert not rule.met(fit, most + EPSILON, total_most + EPSILON)
            full = score(seen, model, as_of, explain=False)
            met = rule.met(full.fit, full.engagement, full.total)
            assert not (skips and met)
            decided = decide_mql(gated, seen, as_of, model)
            assert (decided is not None) == met, (k, rule, full)
            if decided is not None:
                assert (decided.fit, decided.engagement, decided.total) == (
                    full.fit,
                    full.engagement,
                    full.total,
                )
            fresh = decide_mql(ScoreState(one), seen, as_of, model, exact=False)
            assert (fresh is not None) == met
    event(f"skipped some: {skipped > 0}")


@settings(max_examples=300, deadline=None)
@given(models(), histories(), st.floats(min_value=0, max_value=400, allow_nan=False))
def test_the_settled_totals_are_the_full_recomputation(
    spec: dict[str, Any], facts: list[Fact], later_days: float
) -> None:
    model = ScoringModel.model_validate(spec)
    state = ScoreState(model)
    for k in range(1, len(facts) + 1):
        seen = facts[:k]
        state.feed(seen)
        clock = max(f.occurred_at for f in seen)
        for as_of in (clock, clock + timedelta(days=later_days), clock - timedelta(days=1)):
            settled = state.settled(as_of)
            full = score(seen, model, as_of, explain=False)
            if settled is not None:
                assert settled == (full.fit, full.engagement, full.total)
            elif as_of >= clock and any(f.type == "lead.profile_updated" for f in seen):
                event("settled: left to the full recomputation (a rounding tie)")
