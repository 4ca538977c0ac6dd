"""Stage moments in event time: the lifecycle walked over a lead's facts in the order they
happened, whatever order they arrived in.

Fact-driven moves (lead, sal, sql, opportunity, customer and the exits) come out of the walk, so
the same facts give the same path. MQL decisions are the engine's own: taken once, on arrival,
and walked at their trigger's event time, right after the trigger; one the facts have since
overtaken (the lead was past mql by then) moves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.domain.facts import Fact
from engine.domain.lifecycle import QUALIFIABLE, Anomaly, Move, next_stage

#: How facts of the same instant walk: capture first, then the funnel in order, exits last.
SAME_INSTANT = {
    "lead.captured": 0,
    "sales.accepted": 2,
    "sales.rejected": 3,
    "sales.qualified": 4,
    "opportunity.opened": 5,
    "deal.won": 6,
    "deal.lost": 6,
    "sales.disqualified": 7,
    "lead.nurture_enrolled": 7,
}
OTHER = 1  # touches, profile updates, owner assignments


@dataclass(frozen=True, slots=True)
class Step:
    """One move of a lead's path: when it happened, from and to, why, and its trigger (the
    fact's event id, or the MQL decision's trigger)."""

    at: datetime
    from_stage: str
    to_stage: str
    reason: str
    trigger: str

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two steps the same move. An MQL step is the decision as taken (its
        from-stage may read differently once late facts are walked before it)."""
        if self.to_stage == "mql":
            return (self.at, self.to_stage, self.trigger)
        return (self.at, self.from_stage, self.to_stage, self.reason, self.trigger)


@dataclass(frozen=True, slots=True)
class Qualification:
    """An MQL decision: its trigger's event id and the moment it is dated at."""

    trigger: str
    at: datetime
    reason: str = "marketing qualified"


@dataclass(frozen=True, slots=True)
class Walk:
    steps: list[Step]
    anomalies: dict[str, str]  # event id -> why the fact made no sense where it fell


def fact_order(fact: Fact) -> tuple[Any, ...]:
    """The walk's order: event time, then `SAME_INSTANT`, then (source, event id). Arrival
    order plays no part, so any arrival order of the same facts walks the same."""
    return (fact.occurred_at, SAME_INSTANT.get(fact.type, OTHER), fact.source, fact.event_id)


def fact_orders(facts: Iterable[Fact]) -> dict[str, tuple[Any, ...]]:
    """Each event id's place in the walk (`fact_order`; the first fact of an id)."""
    keys: dict[str, tuple[Any, ...]] = {}
    for fact in facts:
        keys.setdefault(fact.event_id, fact_order(fact))
    return keys


def _anchor(at: datetime, trigger: str, keys: dict[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    """Where a move dated `at` and triggered by `trigger` walks: at its trigger when it is dated
    at the trigger's moment, else at its own moment after that moment's facts."""
    key = keys.get(trigger)
    return key if key is not None and key[0] == at else (at, 99)


def step_order(step: Step, keys: dict[str, tuple[Any, ...]]) -> tuple[Any, ...]:
    """A recorded step's place in the walk, so a path reads in the order the walk made it."""
    return (_anchor(step.at, step.trigger, keys), 1 if step.to_stage == "mql" else 0)


def walk(facts: Iterable[Fact], qualified: Sequence[Qualification] = ()) -> Walk:
    """The path `facts` make in event time, with the MQL decisions `qualified` walked right
    after their triggers (a decision not dated at its trigger walks at its own moment)."""
    facts = list(facts)
    keys = fact_orders(facts)
    items: list[tuple[tuple[Any, ...], int, Fact | Qualification]] = [
        (fact_order(fact), 0, fact) for fact in facts
    ]
    items += [(_anchor(q.at, q.trigger, keys), 1, q) for q in qualified]
    items.sort(key=lambda item: (item[0], item[1]))
    stage, steps, anomalies = "anonymous", [], {}
    for _key, _kind, item in items:
        if isinstance(item, Qualification):
            if stage in QUALIFIABLE:
                steps.append(Step(item.at, stage, "mql", item.reason, item.trigger))
                stage = "mql"
            continue
        outcome = next_stage(stage, item.type, item.data)
        if isinstance(outcome, Move):
            steps.append(Step(item.occurred_at, stage, outcome.to, outcome.reason, item.event_id))
            stage = outcome.to
        elif isinstance(outcome, Anomaly):
            anomalies[item.event_id] = outcome.reason
    return Walk(steps, anomalies)
