"""Aggregate caches bounded by what they hold, not only by how many aggregates.

A lead keeps every fact it took (its history), so 10,000 cached leads of long journeys weigh
far more than 10,000 new ones: a count alone let `ingest` of 350k events peak at 650 MB. Each
cached aggregate weighs one plus its facts; the oldest are evicted while the count passes
`LEADENGINE_CACHE_SIZE` or the weight passes `LEADENGINE_CACHE_FACTS`. An evicted aggregate is
read back from the store when it is needed again: nothing is lost, only time.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock
from typing import Any
from uuid import UUID

from eventsourcing.application import Cache, LRUCache

#: default weight budget: facts held in decoded aggregates (each cache), about 100 MB
CACHE_FACTS = 40_000


def weight(aggregate: Any) -> int:
    """What a cached aggregate costs: one, plus the facts it holds (a lead's history)."""
    facts = getattr(aggregate, "facts", None)
    return 1 + (len(facts) if facts is not None else 0)


class Budgeted(OrderedDict[UUID, Any]):
    """An LRU dict (oldest first) that trims itself on every set: at most `maxsize` entries
    and `budget` weight, the entry just set always kept (an aggregate being folded).

    Weights are taken when an entry is set; a cached aggregate that takes events in place is
    set again (the projector on every event, the repository on every save), so its weight
    follows it."""

    def __init__(self, maxsize: int, budget: int = CACHE_FACTS) -> None:
        super().__init__()
        self.maxsize = max(1, maxsize)
        self.budget = max(1, budget)
        self.weights: dict[UUID, int] = {}
        self.total = 0

    def __setitem__(self, key: UUID, value: Any) -> None:
        w = weight(value)
        self.total += w - self.weights.get(key, 0)
        self.weights[key] = w
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > 1 and (len(self) > self.maxsize or self.total > self.budget):
            self.popitem(last=False)

    def __delitem__(self, key: UUID) -> None:
        super().__delitem__(key)
        self.total -= self.weights.pop(key, 0)

    def pop(self, key: UUID, *default: Any) -> Any:
        if key in self:
            self.total -= self.weights.pop(key, 0)
        return super().pop(key, *default)

    def popitem(self, last: bool = True) -> tuple[UUID, Any]:
        key, value = super().popitem(last=last)
        self.total -= self.weights.pop(key, 0)
        return key, value

    def clear(self) -> None:
        super().clear()
        self.weights.clear()
        self.total = 0


class BudgetCache(Cache[UUID, Any]):
    """The write side's aggregate cache (eventsourcing's `Cache` interface) over `Budgeted`:
    a hit moves the aggregate to the young end, a save sets it again (its new weight)."""

    def __init__(self, maxsize: int, budget: int = CACHE_FACTS) -> None:
        super().__init__()
        self.maxsize = maxsize
        self.budget = budget
        self.cache: Budgeted = Budgeted(maxsize, budget)
        self.lock = Lock()

    def get(self, key: UUID, *, evict: bool = False) -> Any:
        with self.lock:
            if evict:
                return self.cache.pop(key)  # KeyError on a miss, as eventsourcing expects
            value = self.cache[key]
            self.cache.move_to_end(key)
            return value

    def put(self, key: UUID, value: Any | None) -> None:
        if value is not None:
            with self.lock:
                self.cache[key] = value


def budget_cache(repository: Any, budget: str | None) -> None:
    """Put a `BudgetCache` of the same size in place of the repository's LRU cache."""
    cache = repository.cache
    if isinstance(cache, LRUCache):
        repository.cache = BudgetCache(cache.maxsize, int(budget) if budget else CACHE_FACTS)


#: the fewest entries a per-lead cache (keys, lead ids) keeps: the leads of one projector batch
#: (10,000 notifications), whose keys are read ahead in one query and must all stay for it
PER_LEAD_FLOOR = 10_000


def key_cache_size(maxsize: str | None) -> int:
    """Entries for the per-lead caches beside an aggregate cache of `maxsize` (its setting,
    LEADENGINE_CACHE_SIZE): as many, but never below `PER_LEAD_FLOOR`. They used to hold 50,000
    keys and 100,000 lead ids whatever the setting, about 25 MB that grew with the leads seen."""
    return max(int(maxsize) if maxsize else 0, PER_LEAD_FLOOR)
