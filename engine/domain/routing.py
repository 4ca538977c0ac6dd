"""Routing decisions as pure functions: which queue takes a lead, and which rep in it.

Queues are tried in the rules file's order; the first whose `when` conditions hold (on the
lead's profile plus its best `persona`) takes the lead. Within a queue only *eligible* reps are
considered: available on the roster and holding fewer open leads than their capacity (the
roster's override, else the queue's). Strategies:

- `round_robin`: reps in file order, starting at the queue's turn; ineligible reps are skipped.
- `weighted_round_robin`: smooth weighted round-robin (each pick adds every eligible rep's
  weight to its running score, takes the highest, subtracts the total): over any window the
  shares follow the weights, without bursts.
- `least_loaded`: the eligible rep with the fewest open leads; ties go round-robin.

Every decision returns a `why` sentence an auditor can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.aggregates.routing import Roster, RoutingQueue
from engine.domain.rules import Queue, Rep, Routing


@dataclass(frozen=True, slots=True)
class Choice:
    rep: str | None
    why: str
    current: dict[str, int]  # new weighted round-robin state (unchanged for other strategies)


def match_queue(routing: Routing, attrs: Mapping[str, Any]) -> Queue | None:
    for queue in routing.queues:
        if queue.matches(attrs):
            return queue
    return None


def _capacity(rep: Rep, roster: Roster | None) -> int | None:
    if roster is not None and rep.id in roster.capacity:
        return roster.capacity[rep.id]
    return rep.capacity


def eligible(queue: Queue, state: RoutingQueue, roster: Roster | None) -> tuple[list[Rep], str]:
    """Reps that can take a lead now, and a note on those skipped and why."""
    loads = state.loads()
    ok: list[Rep] = []
    skipped: list[str] = []
    for rep in queue.reps:
        cap = _capacity(rep, roster)
        if roster is not None and not roster.is_available(rep.id):
            skipped.append(f"{rep.id} unavailable")
        elif cap is not None and loads.get(rep.id, 0) >= cap:
            skipped.append(f"{rep.id} at capacity {loads.get(rep.id, 0)}/{cap}")
        else:
            ok.append(rep)
    note = f"; skipped {', '.join(skipped)}" if skipped else ""
    return ok, note


def choose(queue: Queue, state: RoutingQueue, roster: Roster | None) -> Choice:
    reps, note = eligible(queue, state, roster)
    if not reps:
        return Choice(None, f"queue {queue.id}: no eligible rep{note}", dict(state.current))
    order = [r.id for r in queue.reps]
    start = state.turn % len(order)
    rotation = order[start:] + order[:start]  # round-robin order from this turn
    if queue.strategy == "round_robin":
        pick = next(r for r in rotation if any(e.id == r for e in reps))
        return Choice(
            pick,
            f"queue {queue.id}, round robin turn {state.turn + 1}: {pick}{note}",
            dict(state.current),
        )
    if queue.strategy == "weighted_round_robin":
        current = {r.id: state.current.get(r.id, 0) for r in queue.reps}
        total = sum(r.weight for r in reps)
        for rep in reps:
            current[rep.id] += rep.weight
        best = max(reps, key=lambda r: (current[r.id], -order.index(r.id)))
        current[best.id] -= total
        return Choice(
            best.id,
            f"queue {queue.id}, weighted round robin: {best.id} "
            f"(weight {best.weight} of {total}){note}",
            current,
        )
    loads = state.loads()
    rank = {r: i for i, r in enumerate(rotation)}
    best = min(reps, key=lambda r: (loads.get(r.id, 0), rank[r.id]))
    others = ", ".join(f"{r.id} {loads.get(r.id, 0)}" for r in reps if r.id != best.id)
    cap = _capacity(best, roster)
    return Choice(
        best.id,
        f"queue {queue.id}, least loaded: {best.id} holds {loads.get(best.id, 0)} open"
        f"{f' of {cap}' if cap is not None else ''}"
        f"{f' (others: {others})' if others else ''}{note}",
        dict(state.current),
    )
