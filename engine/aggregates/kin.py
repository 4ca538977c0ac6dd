"""`Kin`: what other streams said about one lead's person, where that lead's consumer can read it.

An identity decision lives on its subject's stream (the alias, the merge loser), so the lead it
names (the known key, the winner) cannot see it on its own stream. Every consumer that records
one also notes it on the named lead's `Kin` (`Joined`) and on its own (`Decided`: a routing that
read the subject's stream before the decision was stored conflicts with it), a shared aggregate
like a routing queue:
any consumer may write it, two writers starting from one version conflict and the loser's batch
is redone on a fresh read. A routing of a lead that belongs, or may belong, to a person of
several notes `Claimed` on the `Kin` of every member it looked at, so two consumers routing two
members of one person at once conflict, and the second sees the first's routing when it redoes
its batch (docs/identity.md, "One person, one owner"). Ids only: nothing personal.
"""

from __future__ import annotations

import functools
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE


@functools.lru_cache(maxsize=8192)
def kin_id(lead_id: UUID) -> UUID:
    """The id of a lead's `Kin` (remembered: a batch asks it for each of its lead events)."""
    return uuid5(NAMESPACE, f"kin:{lead_id}")


class Kin(Aggregate):
    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str) -> None:
        self.key = key  # the lead id (str), not the lead's key: not personal
        #: (relation, subject lead id, occurred_at, source, event_id, subject wins) of each
        #: decision naming it
        self.joined: list[tuple[str, UUID, datetime, str, str, bool]] = []
        self.claims = 0
        #: (relation, other lead id, occurred_at, source, event_id, subject wins) of each
        #: decision this lead recorded on its own stream (`Decided`)
        self.decided: list[tuple[str, UUID, datetime, str, str, bool]] = []

    @staticmethod
    def create_id(key: str) -> UUID:
        return kin_id(UUID(key))

    def join(
        self,
        *,
        relation: str,
        lead_id: UUID,
        occurred_at: datetime,
        source: str,
        event_id: str,
        subject_wins: bool = False,
    ) -> None:
        more = {"subject_wins": True} if subject_wins else {}
        self.trigger_event(
            self.Joined,
            relation=relation,
            lead_id=lead_id,
            at=occurred_at,
            source=source,
            event_id=event_id,
            **more,
        )

    def decide(
        self,
        *,
        relation: str,
        other_id: UUID,
        occurred_at: datetime,
        source: str,
        event_id: str,
        subject_wins: bool = False,
    ) -> None:
        more = {"subject_wins": True} if subject_wins else {}
        self.trigger_event(
            self.Decided,
            relation=relation,
            other_id=other_id,
            at=occurred_at,
            source=source,
            event_id=event_id,
            **more,
        )

    def claim(self, *, lead_id: UUID, owner: str, at: datetime) -> None:
        self.trigger_event(self.Claimed, lead_id=lead_id, owner=owner, at=at)

    class Joined(Aggregate.Event):
        """The lead `lead_id` recorded an identity decision (`relation`) naming this lead."""

        relation: str
        lead_id: UUID
        at: datetime
        source: str
        event_id: str
        #: the subject `lead_id` won the merge (this lead is its duplicate)
        subject_wins: bool = False

        def apply(self, aggregate: Kin) -> None:
            wins = getattr(self, "subject_wins", False)
            aggregate.joined.append(
                (self.relation, self.lead_id, self.at, self.source, self.event_id, wins)
            )

    class Decided(Aggregate.Event):
        """This lead recorded an identity decision naming `other_id` on its own stream. Noted
        here too, in the same batch: a routing that read this lead's stream before the
        decision was stored claims this `Kin` from an older version and is redone, and one
        that reads this `Kin` after sees the decision (three consumers: a link recorded while
        two others route)."""

        relation: str
        other_id: UUID
        at: datetime
        source: str
        event_id: str
        subject_wins: bool = False

        def apply(self, aggregate: Kin) -> None:
            wins = getattr(self, "subject_wins", False)
            if not hasattr(aggregate, "decided"):
                aggregate.decided = []
            aggregate.decided.append(
                (self.relation, self.other_id, self.at, self.source, self.event_id, wins)
            )

    class Claimed(Aggregate.Event):
        """The lead `lead_id`, of this lead's person as its consumer knew it, was routed."""

        lead_id: UUID
        owner: str
        at: datetime

        def apply(self, aggregate: Kin) -> None:
            aggregate.claims += 1


#: every event of a `Kin` (write-side state the read model does not project)
KIN_EVENTS = (Kin.Started, Kin.Joined, Kin.Decided, Kin.Claimed)
