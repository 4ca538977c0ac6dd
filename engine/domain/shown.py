"""What `lead show` prints of a lead's facts, kept as they arrive: the profile facts (the
contact and the profile are read off them), how many touches and the last five.

`lead show --as-of` reads a lead from a snapshot whose facts stay packed (engine/services/
asof_lazy.py); with this kept in the snapshot beside them, showing the lead builds none of its
facts. `of(facts)` is the same read off a list (any lead), and `add` keeps it equal to that
(tests/unit/test_shown.py)."""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.domain.facts import PROFILE_TYPES, Fact, chronological, profile_of

LAST = 5  # touches shown


def _when(fact: Fact) -> tuple[Any, ...]:
    return (fact.occurred_at, fact.seq)  # as `chronological` orders them


@dataclass(slots=True)
class Shown:
    profile_facts: list[Fact] = field(default_factory=list)  # in arrival order
    touches: int = 0
    last_touches: list[Fact] = field(default_factory=list)  # the last `LAST`, in time order

    @classmethod
    def of(cls, facts: Iterable[Fact]) -> Shown:
        shown = cls()
        for fact in facts:
            shown.add(fact)
        return shown

    def add(self, fact: Fact) -> None:
        if fact.type in PROFILE_TYPES:
            self.profile_facts.append(fact)
        elif fact.is_touch:
            self.touches += 1
            last = self.last_touches
            if len(last) < LAST or _when(fact) > _when(last[0]):
                insort(last, fact, key=_when)
                del last[:-LAST]

    def captured(self) -> Fact | None:
        """The lead's latest `lead.captured` fact in time order (its contact), if any."""
        found = [f for f in chronological(self.profile_facts) if f.type == "lead.captured"]
        return found[-1] if found else None

    def profile(self) -> dict[str, Any]:
        return profile_of(self.profile_facts)[0]
