"""Stage moments in event time: the lifecycle walked over a lead's facts in the order they
happened, whatever order they arrived in.

Fact-driven moves (lead, sal, sql, opportunity, customer and the exits) come out of the walk, so
the same facts give the same path. MQL decisions are the engine's own: taken once, on arrival,
and walked at their trigger's event time, right after the trigger; one the facts have since
overtaken (the lead was past mql by then) moves nothing.

`walk` walks all the facts at once (the reference); `WalkState` keeps the same walk one fact or
decision at a time: a fact in order costs O(1), a late one re-walks from where it falls.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
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
#: The only fact types `next_stage` moves on or flags: every other fact walks past untouched.
ACTING = frozenset(SAME_INSTANT)


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


def step_order(step: Step, firsts: Mapping[str, Fact]) -> tuple[Any, ...]:
    """A recorded step's place in the walk, so a path reads in the order the walk made it
    (`firsts`: each event id's first fact, `WalkState.firsts`)."""
    first = firsts.get(step.trigger)  # as `_anchor`, off the trigger's first fact
    key = fact_order(first) if first is not None and first.occurred_at == step.at else None
    return (key or (step.at, 99), 1 if step.to_stage == "mql" else 0)


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


class WalkState:
    """`walk` kept one fact or decision at a time: after every `add_fact` / `add_decision` it
    reads as `walk(facts, qualified)` of all it was given, in the order given.

    Only the facts that act (`ACTING`) and the decisions are kept, in walk order, each with the
    stage it found and what it made there. One that falls after the others is walked alone, in
    O(1); a late one re-walks from where it falls until the walk finds an item in the stage it
    found before (from there on nothing changes). A decision whose trigger arrives after it
    and moves its anchor is the one case that re-sorts and re-walks everything."""

    __slots__ = (
        "_found",
        "_items",
        "_made",
        "_pending",
        "_quals",
        "changed",
        "firsts",
        "flagged",
        "stage",
    )

    def __init__(self) -> None:
        self.firsts: dict[str, Fact] = {}  # each event id's first fact, as `fact_orders`
        self.stage = "anonymous"  # where the walk ends
        self.changed = True  # the steps may differ from what the owner last took (it clears it)
        self.flagged = 0  # how many items are anomalies
        self._items: list[Fact | Qualification] = []  # in walk order (`_key`)
        self._found: list[str] = []  # the stage each item found
        self._made: list[Step | str | None] = []  # its move, its anomaly's reason, or nothing
        self._quals: list[Qualification] = []  # every decision, as given
        self._pending: dict[str, list[Qualification]] = {}  # decisions on a trigger not yet seen

    @classmethod
    def of(cls, facts: Iterable[Fact], qualified: Iterable[Qualification] = ()) -> WalkState:
        state = cls()
        for fact in facts:
            state.add_fact(fact)
        for decision in qualified:
            state.add_decision(decision)
        return state

    def copy(self) -> WalkState:
        """This walk, to go on on its own (items, steps and facts are immutable: shared)."""
        twin = WalkState()
        twin.firsts, twin.stage, twin.changed = dict(self.firsts), self.stage, self.changed
        twin.flagged, twin._quals = self.flagged, list(self._quals)
        twin._items, twin._found = list(self._items), list(self._found)
        twin._made = list(self._made)
        twin._pending = {trigger: list(q) for trigger, q in self._pending.items()}
        return twin

    def __eq__(self, other: object) -> bool:
        """The same walk (a lead compares field by field: `Aggregate.__eq__`)."""
        if not isinstance(other, WalkState):
            return NotImplemented
        same = [n for n in self.__slots__ if n != "changed"]
        return all(getattr(self, n) == getattr(other, n) for n in same)

    def add_fact(self, fact: Fact) -> None:
        first = self.firsts.setdefault(fact.event_id, fact)
        waiting = (
            self._pending.pop(fact.event_id, None) if self._pending and first is fact else None
        )
        if fact.type in ACTING:
            self._insert(fact_order(fact), fact)
        if waiting and any(q.at == fact.occurred_at for q in waiting):
            self._rekey()

    def add_decision(self, decision: Qualification) -> None:
        self._quals.append(decision)
        if decision.trigger not in self.firsts:
            self._pending.setdefault(decision.trigger, []).append(decision)
        self._insert(self._decision_key(decision), decision)

    @property
    def steps(self) -> list[Step]:
        return [made for made in self._made if isinstance(made, Step)]

    @property
    def anomalies(self) -> dict[str, str]:
        return {
            item.event_id: made
            for item, made in zip(self._items, self._made, strict=True)
            if isinstance(made, str) and isinstance(item, Fact)
        }

    def anomaly(self, event_id: str) -> str | None:
        """`walk(...).anomalies.get(event_id)`."""
        return self.anomalies.get(event_id) if self.flagged else None

    def would_qualify(self, decision: Qualification) -> bool:
        """Whether `walk` with `decision` added makes an MQL move triggered by its trigger."""
        at = bisect_right(self._items, self._decision_key(decision), key=self._key)
        if self._stage_before(at) in QUALIFIABLE:
            return True
        return any(s.to_stage == "mql" and s.trigger == decision.trigger for s in self.steps)

    def _key(self, item: Fact | Qualification) -> tuple[Any, ...]:
        """An item's place in the walk (computed, not kept: a lead holds many)."""
        return fact_order(item) if isinstance(item, Fact) else self._decision_key(item)

    def _decision_key(self, decision: Qualification) -> tuple[Any, ...]:
        """`_anchor`, then after the facts of that place (a fact's key is its prefix)."""
        first = self.firsts.get(decision.trigger)
        if first is not None and first.occurred_at == decision.at:
            return (*fact_order(first), 1)
        return (decision.at, 99, 1)

    def _stage_before(self, i: int) -> str:
        if i == 0:
            return "anonymous"
        made = self._made[i - 1]
        return made.to_stage if isinstance(made, Step) else self._found[i - 1]

    def _insert(self, key: tuple[Any, ...], item: Fact | Qualification) -> None:
        items = self._items
        late = items and key < self._key(items[-1])
        at = bisect_right(items, key, key=self._key) if late else len(items)
        items.insert(at, item)
        self._found.insert(at, "")
        self._made.insert(at, None)
        self._walk_from(at, self._stage_before(at))

    def _walk_from(self, start: int, stage: str) -> None:
        found, made_at = self._found, self._made
        for i in range(start, len(self._items)):
            if i > start and found[i] == stage:
                return  # this item and all after it walk as before
            found[i] = stage
            made, old = _act(stage, self._items[i]), made_at[i]
            if made != old:
                made_at[i] = made
                self.flagged += isinstance(made, str) - isinstance(old, str)
                self.changed = self.changed or isinstance(made, Step) or isinstance(old, Step)
            if isinstance(made, Step):
                stage = made.to_stage
        self.stage = stage

    def _rekey(self) -> None:
        """Re-sort with every decision's anchor as it now falls, and walk it all again."""
        items = [item for item in self._items if isinstance(item, Fact)] + self._quals
        items.sort(key=self._key)  # stable: ties keep their arrival order
        self._items = items
        self._found = [""] * len(items)
        self._made = [None] * len(items)
        self.flagged, self.changed = 0, True
        self._walk_from(0, "anonymous")


def _act(stage: str, item: Fact | Qualification) -> Step | str | None:
    """What `item` makes in `stage`, as `walk` walks it: a move, an anomaly's reason, nothing."""
    if isinstance(item, Qualification):
        if stage in QUALIFIABLE:
            return Step(item.at, stage, "mql", item.reason, item.trigger)
        return None
    outcome = next_stage(stage, item.type, item.data)
    if isinstance(outcome, Move):
        return Step(item.occurred_at, stage, outcome.to, outcome.reason, item.event_id)
    if isinstance(outcome, Anomaly):
        return outcome.reason
    return None
