"""`whatif`'s replay (engine/domain/whatif.py: the twin fold, the running scores, their gates,
the fit re-matched only for the attributes a profile fact changes, the several-cap greedy
skipped when a group's points fit under its smallest cap, final scores from `settled`, leads
with no profile fact included) reports exactly what folding each lead on its own with exact
decisions and scoring it by the full recomputation reports: the same summary, every changed
lead listed with its scores. Random leads interleaved in arrival order, two random rule sets
(half the time the MQL rule alone differs; or the default rules against a lower MQL total,
as `bench/whatif.py`), a random `since`."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.domain.fold import EPOCH, LeanLead
from engine.domain.lifecycle import RANK
from engine.domain.rules import Rules, load_rules
from engine.domain.scoring import score
from engine.domain.whatif import FactIn, Outcome, WhatIf, replay
from tests.property.test_incremental_scoring import models
from tests.property.test_lean_fold import START, data_of, histories

Raw = tuple[str, int, str, str, int, bool]


def lead_facts(key: str, raw: list[Raw], rnd: random.Random) -> list[FactIn]:
    raw = list(raw)
    if rnd.random() < 0.7:  # else no capture: maybe no profile fact at all
        raw.append(("lead.captured", 0, "web", "cap", 0, True))
    if rnd.random() < 0.5:  # a profile the fit rules like: MQL decisions are then common
        raw.append(("lead.profile_updated", rnd.randrange(40), "crm", "fit", 0, True))
    rnd.shuffle(raw)
    return [
        FactIn(
            key,
            f"{id_}-{type_}-{hour}-{variant}" if named else f"n{n}",  # named: redelivered
            type_,
            source,
            START + timedelta(hours=hour),
            data_of(type_, variant),
        )
        for n, (type_, hour, source, id_, variant, named) in enumerate(raw)
    ]


def folded_alone(facts: list[FactIn], rules: Rules, current: Rules, since: Any) -> Outcome:
    """One side of one lead as the reference: its own lean lead, exact decisions, the full
    recomputation's total."""
    lead = LeanLead(facts[0].lead_key)
    for fact in facts:
        by = rules if since is None or fact.occurred_at >= since else current
        lead.record_fact(fact.event_id, fact.type, fact.source, fact.occurred_at, fact.data, by)
    total = score(lead.facts, rules, lead.clock or EPOCH, explain=False).total
    reached = any(RANK.get(stage, -1) >= RANK["mql"] for stage in lead.reached)
    return Outcome(lead.stage, lead.mql_rounds > 0, total, reached)


@given(
    models(),
    models(),
    st.lists(histories, min_size=1, max_size=5),
    st.randoms(use_true_random=False),
    st.none() | st.integers(0, 40),
    st.booleans(),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_replay_reports_each_lead_folded_alone_and_fully_scored(
    old_spec: dict[str, Any],
    new_spec: dict[str, Any],
    raws: list[list[Raw]],
    rnd: random.Random,
    since_hour: int | None,
    default: bool,
) -> None:
    current = load_rules() if default else Rules.model_validate(old_spec)
    if default:  # its several-cap groups (page views, email opens): the greedy's shortcut
        mql = current.mql.model_copy(update={"total_at_least": rnd.choice([20.0, 30.0, 40.0])})
        new = current.model_copy(update={"mql": mql})
    elif rnd.random() < 0.5:  # the MQL rule alone differs: one running score serves both
        new = current.model_copy(update={"mql": Rules.model_validate(new_spec).mql})
    else:
        new = Rules.model_validate(new_spec)
    since = None if since_hour is None else START + timedelta(hours=since_hour)
    leads = [lead_facts(f"k{n}@example.com", raw, rnd) for n, raw in enumerate(raws)]
    leads = [facts for facts in leads if facts]
    # the leads interleaved, each one's facts in its own arrival order
    arrival = [n for n, facts in enumerate(leads) for _ in facts]
    rnd.shuffle(arrival)
    cursors = [0] * len(leads)
    log = []
    for n in arrival:
        log.append(leads[n][cursors[n]])
        cursors[n] += 1

    got = replay(log, current, new, since=since, workers=1)

    want = WhatIf(current.ref, new.ref, since)
    want.facts, want.leads = len(log), len(leads)
    window = [f for f in log if since is None or f.occurred_at >= since]
    want.facts_in_window, want.leads_in_window = len(window), len({f.lead_key for f in window})
    for facts in leads:
        key = facts[0].lead_key
        want.old[key] = folded_alone(facts, current, current, since)
        want.new[key] = folded_alone(facts, new, current, since)
    assert got.summary(limit=len(leads)) == want.summary(limit=len(leads))
    assert got.old == want.old and got.new == want.new
    event(f"changed: {min(want.summary()['leads_changed'], 2)}")
    event(f"no profile fact: {any(not any(f.type.startswith('lead.') for f in x) for x in leads)}")
