"""Buying-group coverage (docs/accounts.md#buying-groups), a pure function of one account.

A member lead takes the role of its best persona (`accounts.buying_group.roles`); a role is
covered when a member holding it is engaged (engagement at least
`accounts.engagement.engaged_at_least`). The account's segment (the first in
`accounts.buying_group.segments` whose `when` holds on its firmographics) says which roles it
needs. Group engagement: the mean, over the required roles, of the highest engagement among the
members in each role (a role nobody holds counts 0); 0 when the segment requires nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from engine.domain.accounts.profile import AccountProfile
from engine.domain.rules import AccountRules


class Holder(Protocol):
    """A member as coverage reads it (engine.domain.accounts.scoring.Member)."""

    @property
    def lead_id(self) -> str: ...
    @property
    def engagement(self) -> float: ...
    @property
    def persona(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class RoleCoverage:
    role: str
    required: bool  # the account's segment needs it
    leads: int  # members holding the role
    engaged: int  # of those, engaged
    best_engagement: float  # the most engaged holder's engagement (0: none)

    @property
    def covered(self) -> bool:
        return self.engaged > 0


@dataclass(frozen=True, slots=True)
class Coverage:
    segment: str | None  # None: no segment applies (nothing required)
    roles: tuple[RoleCoverage, ...]  # every role of the rules, in rules order
    covered: tuple[str, ...]  # required roles covered, in rules order
    missing: tuple[str, ...]  # required roles not covered, in rules order
    engagement: float  # group engagement, 0-100


def role_of(persona: str | None, rules: AccountRules) -> str | None:
    return rules.buying_group.role_of_persona.get(persona) if persona else None


def coverage(profile: AccountProfile, members: Iterable[Holder], rules: AccountRules) -> Coverage:
    group = rules.buying_group
    attrs = profile.attrs()
    segment = next((s for s in group.segments if s.matches(attrs)), None)
    required = frozenset(segment.required if segment else ())
    holders: dict[str, list[float]] = {r.id: [] for r in group.roles}
    for m in members:
        role = role_of(m.persona, rules)
        if role is not None:
            holders[role].append(m.engagement)
    at_least = rules.engagement.engaged_at_least
    roles = tuple(
        RoleCoverage(
            r.id,
            r.id in required,
            len(holders[r.id]),
            sum(1 for e in holders[r.id] if e >= at_least),
            round(max(holders[r.id], default=0.0), 2),
        )
        for r in group.roles
    )
    needed = [r for r in roles if r.required]
    engagement = (
        round(min(100.0, sum(min(r.best_engagement, 100.0) for r in needed) / len(needed)), 2)
        if needed
        else 0.0
    )
    return Coverage(
        segment.id if segment else None,
        roles,
        tuple(r.role for r in needed if r.covered),
        tuple(r.role for r in needed if not r.covered),
        engagement,
    )
