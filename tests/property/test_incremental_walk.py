"""The incremental walk (engine/domain/moments.py `WalkState`) is the full walk (`walk`) kept
as facts arrive: for any facts and MQL decisions, delivered sorted, reversed or shuffled, after
every fact or decision it has exactly the full walk's steps, anomalies and final stage, and it says
whether a new decision would move the lead exactly as a walk with that decision does.

A Lead built on it takes exactly the decisions (moves, retractions, anomalies, MQL) the Lead
built on the full walk took, whatever the arrival order, and a fold of its events reads the
same path, stage and stage moments."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain import lifecycle, moments
from engine.domain.facts import Fact
from engine.domain.moments import Qualification, WalkState, walk
from engine.domain.rules import MqlRule, Rules, load_rules
from engine.domain.scorestate import decide_mql
from tests.property.test_event_time_properties import FACTS

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INERT = ("touch.page_viewed", "touch.form_submitted", "lead.profile_updated", "owner.assigned")
TYPES = sorted(moments.ACTING) + list(INERT)
IDS = [f"e{i}" for i in range(8)]
RULES = load_rules()
#: a low bar, so that generated journeys take MQL decisions between their facts
EAGER = RULES.model_copy(update={"mql": MqlRule(total_at_least=5)})

ORDERS = ("sorted", "reversed", "shuffled")


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


@st.composite
def facts(draw: st.DrawFn, *, max_size: int = 16) -> list[Fact]:
    """Facts that tie in time often, share ids across sources, and may repeat outright."""
    out = []
    for seq in range(draw(st.integers(0, max_size))):
        type_ = draw(st.sampled_from(TYPES))
        data: dict[str, Any] = {"owner": "ann"} if type_ == "owner.assigned" else {}
        if draw(st.booleans()):
            data["reason"] = draw(st.sampled_from(["price", "no budget"]))
        out.append(
            Fact(
                draw(st.sampled_from(IDS)),
                type_,
                draw(st.sampled_from(["crm", "web"])),
                at(draw(st.integers(0, 6))),
                data,
                seq,
            )
        )
    return out


def deliver(draw: st.DrawFn, got: list[Fact]) -> list[Fact]:
    order = draw(st.sampled_from(ORDERS))
    if order == "sorted":
        return sorted(got, key=lambda f: f.occurred_at)
    if order == "reversed":
        return sorted(got, key=lambda f: f.occurred_at, reverse=True)
    return draw(st.permutations(got))


@st.composite
def deliveries(draw: st.DrawFn) -> list[Fact | Qualification]:
    """Facts in one of the three orders, with decisions put in among them: on a fact already
    delivered or on an id not yet seen (the anchor moves when it arrives), dated at the
    trigger's moment or another."""
    sent: list[Fact | Qualification] = list(deliver(draw, draw(facts())))
    for _ in range(draw(st.integers(0, 4))):
        where = draw(st.integers(0, len(sent)))
        before = [f for f in sent[:where] if isinstance(f, Fact)]
        trigger = draw(st.sampled_from([f.event_id for f in before] + ["e0", "e7", "late"]))
        moments_ = [f.occurred_at for f in before if f.event_id == trigger]
        when = draw(st.sampled_from([*moments_, at(draw(st.integers(0, 6)))]))
        sent.insert(where, Qualification(trigger, when))
    return sent


def probe(draw: st.DrawFn, sent: list[Fact | Qualification]) -> Qualification:
    ids = [f.event_id for f in sent if isinstance(f, Fact)] + ["late"]
    return Qualification(draw(st.sampled_from(ids)), at(draw(st.integers(0, 6))))


@given(st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_incremental_walk_is_the_full_walk_after_every_fact_and_decision(data: Any) -> None:
    sent = data.draw(deliveries())
    state = WalkState()
    got_facts: list[Fact] = []
    got_quals: list[Qualification] = []
    before: list[moments.Step] = []
    for item in sent:
        if isinstance(item, Fact):
            got_facts.append(item)
            state.add_fact(item)
        else:
            got_quals.append(item)
            state.add_decision(item)
        full = walk(got_facts, got_quals)
        assert state.steps == full.steps
        assert list(state.anomalies.items()) == list(full.anomalies.items())
        assert state.stage == (full.steps[-1].to_stage if full.steps else "anonymous")
        for fact in got_facts:
            assert state.anomaly(fact.event_id) == full.anomalies.get(fact.event_id)
        if full.steps != before:
            assert state.changed  # the owner is told whenever the moves differ
        state.changed, before = False, full.steps
        decision = probe(data.draw, sent)
        trial = walk(got_facts, [*got_quals, decision])
        assert state.would_qualify(decision) == any(
            s.to_stage == "mql" and s.trigger == decision.trigger for s in trial.steps
        )
    rebuilt = WalkState.of(got_facts, got_quals)
    assert (rebuilt.steps, rebuilt.anomalies) == (state.steps, state.anomalies)
    assert rebuilt == state  # built at once or one by one: the same state


def test_facts_that_do_not_act_walk_past_in_every_stage() -> None:
    """`WalkState` keeps only `ACTING` facts: every other type moves or flags nothing."""
    others = {"touch.page_viewed", "lead.profile_updated", "owner.assigned", "campaign.cost"}
    for stage in lifecycle.STAGES:
        for type_ in others:
            assert lifecycle.next_stage(stage, type_, {"reason": "x", "owner": "ann"}) is None


class FullWalkLead(Lead):
    """The Lead as it was before `WalkState`: the full walk on every fact (the reference)."""

    def _restage(self, trigger: str) -> str | None:
        walked = moments.walk(self.facts, self.qualified)
        wanted = {step.identity for step in walked.steps}
        for version, step in list(self.path):
            if step.identity not in wanted:
                self.trigger_event(
                    self.StageRetracted,
                    version_retracted=version,
                    to_stage=step.to_stage,
                    reason=f"{trigger} happened earlier: walked in event time, the lead no "
                    f"longer moved to {step.to_stage} at {step.at.isoformat()}",
                    trigger_event_id=trigger,
                )
        kept = {step.identity for _version, step in self.path}
        for step in walked.steps:
            if step.identity not in kept:
                self.trigger_event(
                    self.StageChanged,
                    from_stage=step.from_stage,
                    to_stage=step.to_stage,
                    reason=step.reason,
                    trigger_event_id=step.trigger,
                    occurred_at=step.at,
                )
        return walked.anomalies.get(trigger)

    def _qualify(self, rules: Rules, trigger: str, at: datetime) -> bool:
        if self.stage not in lifecycle.QUALIFIABLE or self.clock is None:
            return False
        result = decide_mql(self._running(rules), self.facts, self.clock)
        if result is None:
            return False
        decision = moments.Qualification(trigger, at)
        walked = moments.walk(self.facts, [*self.qualified, decision])
        if not any(s.to_stage == "mql" and s.trigger == trigger for s in walked.steps):
            return False
        self.trigger_event(
            self.MarketingQualified,
            from_stage=self.stage,
            rules_version=rules.ref,
            score=result.total,
            fit=result.fit,
            engagement=result.engagement,
            trigger_event_id=trigger,
            occurred_at=at,
        )
        return True


#: the funnel facts of the event-time property (one data set for both), plus touches and a
#: profile update
LEAD_FACTS: dict[str, dict[str, Any]] = {
    **FACTS,
    "touch.form_submitted": {"channel": "email"},
    "touch.page_viewed": {"channel": "organic"},
    "lead.profile_updated": {"title": "CMO"},
}
#: the facts that can trigger an MQL decision, drawn more often so that decisions are taken
SCORING = ("lead.captured", "touch.form_submitted", "touch.page_viewed", "lead.profile_updated")


@given(
    st.lists(
        st.tuples(
            st.sampled_from([*sorted(LEAD_FACTS), *SCORING * 6]),
            st.integers(0, 8),
            st.sampled_from(["crm", "web"]),
            st.sampled_from(IDS),
        ),
        max_size=18,
    ),
    st.sampled_from(ORDERS),
    st.randoms(use_true_random=False),
    st.none() | st.integers(0, 18),
)
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_lead_on_the_incremental_walk_decides_as_the_full_walk_lead(
    raw: list[tuple[str, int, str, str]], order: str, rnd: random.Random, erase: int | None
) -> None:
    """... and after `forget` (at `erase`), when the walk starts over on the stripped facts."""
    if order == "sorted":
        raw = sorted(raw, key=lambda r: r[1])
    elif order == "reversed":
        raw = sorted(raw, key=lambda r: r[1], reverse=True)
    else:
        rnd.shuffle(raw)
    lead_id = uuid4()
    fast, full = Lead.start("k", lead_id), FullWalkLead.start("k", lead_id)
    for lead in (fast, full):
        for n, (type_, minute, source, event_id) in enumerate(raw):
            if n == erase:
                lead.erase(reason="asked", by="ops", at=at(0))
            lead.record(  # an id names one content; the same (source, id) again is a redelivery
                event_id=f"{event_id}-{type_}-{minute}",
                event_type=type_,
                source=source,
                occurred_at=at(minute * 30),
                data=dict(LEAD_FACTS[type_]),
                rules=EAGER,
            )
    events = fast.collect_events()
    for kind in ("StageRetracted", "MarketingQualified", "AnomalyFlagged", "Erased"):
        event(f"{kind} {'taken' if any(type(e).__name__ == kind for e in events) else 'none'}")
    assert decisions_of(events) == decisions_of(full.collect_events())
    assert (fast.stage, fast.reached, fast.path) == (full.stage, full.reached, full.path)
    folded: Lead | None = None
    for stored in events:
        folded = stored.mutate(folded)
    assert folded is not None
    assert (folded.stage, folded.reached, folded.path) == (fast.stage, fast.reached, fast.path)


def decisions_of(events: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events, without what differs between the two (their clocks, the aggregate class)."""
    skip = ("timestamp", "originator_topic")
    return [(type(e).__name__, {k: v for k, v in vars(e).items() if k not in skip}) for e in events]
