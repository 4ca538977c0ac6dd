"""The identity map: a pure fold of identity decisions into people (sets of lead ids).

Decisions are folded in event time (ties: source, event id, lead id), never in arrival order,
so two consumers that record a link and the touches around it in any interleaving produce the
same map. Links and merges join two leads; an unmerge takes back every earlier join of the
same two leads (either direction). The person id is the lead id the surviving joins lead to
(the merge winner, the link's known key), see `IdentityMap`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

KINDS = ("linked", "merged", "unmerged")
#: the contract's identity event type behind each decision kind
KIND_OF_TYPE = {"identity.linked": "linked", "lead.merged": "merged", "lead.unmerged": "unmerged"}


@dataclass(frozen=True, slots=True)
class Link:
    """One identity decision: `lead_id` (the subject's lead) and `other_id`, as recorded."""

    kind: str
    lead_id: UUID
    other_id: UUID
    occurred_at: datetime
    source: str
    event_id: str
    by: str | None = None
    reason: str | None = None
    #: the subject (`lead_id`) won the merge: `other_id` is the one that points away
    subject_wins: bool = False

    @property
    def order(self) -> tuple[datetime, str, str, str]:
        return (self.occurred_at, self.source, self.event_id, str(self.lead_id))

    @property
    def loser(self) -> UUID:
        """The end that points away: the alias, the merge's duplicate."""
        return self.other_id if self.subject_wins else self.lead_id

    @property
    def pair(self) -> frozenset[UUID]:
        return frozenset((self.lead_id, self.other_id))


class IdentityMap:
    """Which person each lead id belongs to; a lead never joined is a person of its own.

    A person is a connected set of leads over the surviving joins. Its id is the lead id of
    the member no surviving join points away from (the merge winner, the link's known key; a
    join points away from its subject unless `subject_wins`);
    several such (two merges into two winners): the smallest id; none (a cycle): the smallest
    member. Neither depends on the order joins were folded in, and the read model's SQL
    (engine/projections/identity.py) computes the same."""

    def __init__(self, links: Iterable[Link] = ()) -> None:
        self.links = sorted(links, key=lambda link: link.order)
        self.joins = _surviving(self.links)
        self._parent: dict[UUID, UUID] = {}
        for join in self.joins:
            a, b = self._find(join.lead_id), self._find(join.other_id)
            if a != b:
                self._parent[a] = b
        groups: dict[UUID, set[UUID]] = {}
        for join in self.joins:
            for lead_id in (join.lead_id, join.other_id):
                groups.setdefault(self._find(lead_id), set()).add(lead_id)
        subjects = {join.loser for join in self.joins}
        self._people: dict[UUID, list[UUID]] = {}
        self._person: dict[UUID, UUID] = {}
        for members in groups.values():
            ordered = sorted(members, key=str)
            sinks = [m for m in ordered if m not in subjects]
            person = (sinks or ordered)[0]
            self._people[person] = ordered
            self._person.update((m, person) for m in ordered)

    def _find(self, lead_id: UUID) -> UUID:
        root = lead_id
        while root in self._parent:
            root = self._parent[root]
        while lead_id != root:  # path compression: the fold stays linear in practice
            up = self._parent[lead_id]
            self._parent[lead_id] = root
            lead_id = up
        return root

    def person_of(self, lead_id: UUID) -> UUID:
        return self._person.get(lead_id, lead_id)

    def people(self) -> dict[UUID, list[UUID]]:
        """Every person with more than one lead: person id -> its lead ids, sorted."""
        return dict(sorted(self._people.items(), key=lambda item: str(item[0])))

    def members(self, lead_id: UUID) -> list[UUID]:
        """Every lead id of the person `lead_id` belongs to (itself included), sorted."""
        return self._people.get(self.person_of(lead_id), [lead_id])


def _surviving(links: list[Link]) -> list[Link]:
    """The joins (links and merges) no later unmerge of the same two leads took back."""
    joins: list[Link] = []
    for link in links:
        if link.kind == "unmerged":
            joins = [j for j in joins if j.pair != link.pair]
        else:
            joins.append(link)
    return joins
