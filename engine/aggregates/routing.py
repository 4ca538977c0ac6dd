"""Routing state as aggregates, so concurrent consumers can never hand out the same turn.

`RoutingQueue` (one per queue in the rules) holds the round-robin turn, the smooth weighted
round-robin weights and which open leads each rep holds (its load). Every assignment is an event
on it; two consumers that both try to take turn N conflict on the aggregate's version, and the
loser reloads and takes turn N+1. `Roster` holds rep availability and capacity overrides, from
`rep.availability_changed` facts.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE, Recorded
from engine.domain import identity

ROSTER_KEY = "default"


@functools.lru_cache(maxsize=1024)
def queue_id(key: str) -> UUID:
    return uuid5(NAMESPACE, f"queue:{key}")


@functools.lru_cache(maxsize=16)
def roster_id(key: str = ROSTER_KEY) -> UUID:
    return uuid5(NAMESPACE, f"roster:{key}")


class RoutingQueue(Aggregate):
    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str) -> None:
        self.key = key
        self.turn = 0  # assignments made so far: the round-robin position
        self.current: dict[str, int] = {}  # smooth weighted round-robin state
        # lead id (str) -> rep, for leads still counted in a load; events recorded before
        # migration 7 name the lead by its key instead (`release` accepts either)
        self.open: dict[str, str] = {}
        self.assigned: dict[str, int] = {}  # rep -> assignments ever

    @staticmethod
    def create_id(key: str) -> UUID:
        return queue_id(key)

    def load(self, rep: str) -> int:
        return sum(1 for r in self.open.values() if r == rep)

    def loads(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rep in self.open.values():
            out[rep] = out.get(rep, 0) + 1
        return out

    def assign(
        self,
        *,
        lead_key: str,
        rep: str,
        strategy: str,
        why: str,
        current: dict[str, int],
        at: datetime,
    ) -> None:
        self.trigger_event(
            self.Assigned,
            lead_key=lead_key,
            rep=rep,
            turn=self.turn,
            strategy=strategy,
            why=why,
            current=current,
            occurred_at=at,
        )

    def release(
        self, *, lead_key: str, reason: str, at: datetime, legacy_key: str | None = None
    ) -> bool:
        """Stop counting the lead in its rep's load. `lead_key` is the lead's id (str); an
        assignment recorded before migration 7 is found by the lead's key, `legacy_key`."""
        if lead_key not in self.open:
            if legacy_key is None or legacy_key not in self.open:
                return False
            lead_key = legacy_key
        self.trigger_event(
            self.Released, lead_key=lead_key, rep=self.open[lead_key], reason=reason, occurred_at=at
        )
        return True

    class Assigned(Aggregate.Event):
        lead_key: str
        rep: str
        turn: int
        strategy: str
        why: str
        current: dict[str, int]
        occurred_at: datetime

        def apply(self, aggregate: RoutingQueue) -> None:
            aggregate.turn = self.turn + 1
            aggregate.current = dict(self.current)
            aggregate.open[self.lead_key] = self.rep
            aggregate.assigned[self.rep] = aggregate.assigned.get(self.rep, 0) + 1

    class Released(Aggregate.Event):
        lead_key: str
        rep: str
        reason: str
        occurred_at: datetime

        def apply(self, aggregate: RoutingQueue) -> None:
            aggregate.open.pop(self.lead_key, None)


class Roster(Aggregate):
    """Which reps are available, and capacity overrides, as upstream last said."""

    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str = ROSTER_KEY) -> None:
        self.key = key
        self.available: dict[str, bool] = {}
        self.capacity: dict[str, int] = {}
        self.seen: dict[identity.EventKey, dict[str, Any]] = {}  # (source, id) -> content

    @staticmethod
    def create_id(key: str = ROSTER_KEY) -> UUID:
        return roster_id(key)

    def is_available(self, rep: str) -> bool:
        return self.available.get(rep, True)

    def record(
        self, *, event_id: str, source: str, rep: str, data: dict[str, Any], at: datetime
    ) -> Recorded:
        """Record a rep's availability; a duplicate when this (source, id) was recorded.

        Raises `EventConflict` when it was recorded with other content."""
        available, capacity = bool(data["available"]), data.get("capacity")
        reason = data.get("reason")
        known = identity.lookup(self.seen, source, event_id)
        if known is not None:
            new = _content(at, rep, available, capacity, reason)
            identity.check_same(known, new, source=source, event_id=event_id)
            return Recorded.DUPLICATE
        self.trigger_event(
            self.AvailabilityChanged,
            event_id=event_id,
            rep=rep,
            available=available,
            capacity=capacity,
            reason=reason,
            occurred_at=at,
            source=source,
        )
        return Recorded.ACCEPTED

    class AvailabilityChanged(Aggregate.Event):
        """Version 2 keeps the CloudEvent's source; version 1 events read it as None."""

        class_version = 2

        event_id: str
        rep: str
        available: bool
        capacity: int | None
        reason: str | None
        occurred_at: datetime
        source: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["source"] = None

        def apply(self, aggregate: Roster) -> None:
            aggregate.seen[(self.source, self.event_id)] = _content(
                self.occurred_at, self.rep, self.available, self.capacity, self.reason
            )
            aggregate.available[self.rep] = self.available
            if self.capacity is not None:
                aggregate.capacity[self.rep] = self.capacity


def _content(
    at: datetime, rep: str, available: bool, capacity: int | None, reason: str | None
) -> dict[str, Any]:
    data = {"available": available, "capacity": capacity, "reason": reason}
    return identity.content("rep.availability_changed", at, data, subject=rep)
