"""What-if folds both sides of a lead as one lead until their MQL decisions differ
(engine/domain/whatif.py `_Twins`), and decides on the running score without re-scoring a
clearly met rule. For random histories (funnel facts, touches, profile updates, ties, late
facts, redeliveries), two random rule sets and a random `since`, each side ends exactly as a
lean lead folded on its own with exact decisions: same stage, path, stage moments, MQL
decisions (trigger and moment) and final score (also as what-if reports it: `final_total`)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.domain.fold import LeanLead
from engine.domain.rules import Rules
from engine.domain.scorestate import same_scoring
from engine.domain.whatif import FactIn, Job, final_total, fold_pair, lead_rows
from tests.property.test_incremental_scoring import models
from tests.property.test_lean_fold import START, data_of, histories

SAME = ("stage", "reached", "path", "qualified", "mql_rounds", "anomalies", "clock", "facts")


@given(
    models(),
    models(),
    histories,
    st.randoms(use_true_random=False),
    st.none() | st.integers(0, 40),
    st.booleans(),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_each_side_is_the_lead_folded_on_its_own(
    old_spec: dict[str, Any],
    new_spec: dict[str, Any],
    raw: list[tuple[str, int, str, str, int, bool]],
    rnd: random.Random,
    since_hour: int | None,
    fits: bool,
) -> None:
    current = Rules.model_validate(old_spec)
    if rnd.random() < 0.5:  # half the time the MQL rule alone differs: one running score
        new = current.model_copy(update={"mql": Rules.model_validate(new_spec).mql})
    else:
        new = Rules.model_validate(new_spec)
    raw = [("lead.captured", 0, "web", "cap", 0, True), *raw]
    if fits:  # a profile the fit rules like: MQL decisions are then common
        raw.append(("lead.profile_updated", rnd.randrange(40), "crm", "fit", 0, True))
    rnd.shuffle(raw)
    facts = [
        FactIn(
            "k@example.com",
            f"{id_}-{type_}-{hour}-{variant}" if named else f"n{n}",  # named: redelivered
            type_,
            source,
            START + timedelta(hours=hour),
            data_of(type_, variant),
        )
        for n, (type_, hour, source, id_, variant, named) in enumerate(raw)
    ]
    since = None if since_hour is None else START + timedelta(hours=since_hour)
    job = Job([facts], current, new, since, same_scoring(current, new))
    old_side, new_side = fold_pair(*lead_rows(facts), job)
    event(f"split: {old_side is not new_side}")
    event(f"mql rounds old {min(old_side.mql_rounds, 2)} new {min(new_side.mql_rounds, 2)}")
    for side, rules in ((old_side, current), (new_side, new)):
        alone = LeanLead("k@example.com")
        for fact in facts:
            by = rules if since is None or fact.occurred_at >= since else current
            alone.record_fact(
                fact.event_id, fact.type, fact.source, fact.occurred_at, fact.data, by
            )
        for name in SAME:
            assert getattr(side, name) == getattr(alone, name), name
        assert side.walked == alone.walked
        assert side.current_score(rules, explain=False) == alone.current_score(rules, explain=False)
        # what the summary reports: from the running score, exactly the full recomputation's
        assert final_total(side, rules) == alone.current_score(rules, explain=False).total
