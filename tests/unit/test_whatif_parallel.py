"""`whatif` folds leads in worker processes: the result is the same, byte for byte, for any
number of workers and any split into chunks, and the same as the leads folded one by one on
the Lead aggregate."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

import pytest

from engine.aggregates.lead import Lead
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.domain.rules import Rules, load_rules
from engine.domain.whatif import MAX_WORKERS, FactIn, auto_workers, replay, worker_count

RULES = load_rules()
LOOSER = RULES.model_copy(update={"mql": RULES.mql.model_copy(update={"total_at_least": 30})})
#: scores otherwise (engagement weighs more) and qualifies lower: no running score is shared
HEAVIER = LOOSER.model_copy(
    update={"combine": RULES.combine.model_copy(update={"engagement_weight": 0.8})}
)


def _facts(leads: int) -> list[FactIn]:
    out = []
    for raw in generate(leads, seed=5):
        env = validate_event(raw)
        if env.is_lead_event:
            out.append(
                FactIn(env.subject, env.id, env.type, env.source, env.occurred_at, dict(env.data))
            )
    return out


def test_any_number_of_workers_gives_the_same_result_byte_for_byte() -> None:
    facts = _facts(120)
    one = replay(facts, RULES, LOOSER, workers=1)
    doc = json.dumps(one.summary(limit=10_000))
    assert one.summary()["mql_new"] > one.summary()["mql_old"]  # the rules differ somewhere
    for workers, chunk in ((2, 7), (3, 1), (4, 50)):
        got = replay(facts, RULES, LOOSER, workers=workers, chunk=chunk)
        assert json.dumps(got.summary(limit=10_000)) == doc
        assert list(got.old.items()) == list(one.old.items())  # same leads, same order
        assert list(got.new.items()) == list(one.new.items())


def test_workers_above_the_cap_are_said_not_silently_capped() -> None:
    facts = _facts(30)
    asked = MAX_WORKERS + 5
    got = replay(facts, RULES, LOOSER, workers=asked, chunk=1)
    assert (got.workers, got.workers_note) == (MAX_WORKERS, "cap")
    few = replay(facts, RULES, LOOSER, workers=3, chunk=20)  # 30 leads: two chunks
    assert (few.workers, few.workers_note) == (2, "2 chunks of up to 20 leads")
    one = replay(facts, RULES, LOOSER, workers=2, chunk=1)
    assert (one.workers, one.workers_note) == (2, None)
    assert json.dumps(got.summary()) == json.dumps(one.summary()) == json.dumps(few.summary())
    assert worker_count(None, 10**6, 100)[1] is None  # the engine's own choice says nothing
    assert worker_count(1, 10**6, 100) == (1, None)


def test_progress_counts_facts_folded_up_to_all() -> None:
    facts = _facts(30)
    seen: list[int] = []
    replay(facts, RULES, RULES, workers=2, chunk=4, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(facts)


@pytest.mark.parametrize("other", [LOOSER, HEAVIER], ids=["same-scoring", "other-scoring"])
def test_the_lean_whatif_is_the_aggregate_folded_fact_by_fact(other: Rules) -> None:
    """Both sides of the what-if, whether the two rule sets share a running score or not."""
    facts = _facts(60)
    since = sorted(f.occurred_at for f in facts)[len(facts) // 2]
    for cut in (None, since):
        result = replay(facts, RULES, other, workers=2, chunk=9, since=cut)
        assert result.summary()["mql_new"] != result.summary()["mql_old"]
        for outcomes, rules in ((result.old, RULES), (result.new, other)):
            leads = _aggregate_fold(facts, RULES, rules, cut)
            assert list(outcomes) == list(leads)
            for key, lead in leads.items():
                outcome = outcomes[key]
                assert (outcome.stage, outcome.mql) == (lead.stage, lead.mql_rounds > 0)
                assert outcome.score == lead.current_score(rules, explain=False).total


def _aggregate_fold(
    facts: list[FactIn], before: Rules, after: Rules, since: datetime | None
) -> dict[str, Lead]:
    leads: dict[str, Lead] = {}
    for fact in facts:
        lead = leads.setdefault(fact.lead_key, Lead.start(fact.lead_key, UUID(int=0)))
        lead.record(
            event_id=fact.event_id,
            event_type=fact.type,
            source=fact.source,
            occurred_at=fact.occurred_at,
            data=fact.data,
            rules=after if since is None or fact.occurred_at >= since else before,
        )
    return leads


def test_workers_are_started_only_for_enough_facts() -> None:
    assert auto_workers(10) == 1
    assert 1 <= auto_workers(10_000_000) <= 4
