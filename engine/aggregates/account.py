"""The Account aggregate: an account's firmographics as the CRM sent them (`account.updated`).

Every update is kept whole; the profile is folded from them by
`engine.domain.accounts.profile`, field by field from the latest-dated update that names it, so
the order updates arrive in never changes an account (replays and late deliveries agree).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE, Recorded
from engine.domain import identity


def account_id(key: str) -> UUID:
    return uuid5(NAMESPACE, f"account:{key}")


class Account(Aggregate):
    """One CRM account (key = the CloudEvent subject: the account id)."""

    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: dict[identity.EventKey, dict[str, Any]] = {}  # (source, id) -> content
        #: (occurred_at, source, event_id, data) of every update, in arrival order
        self.updates: list[tuple[datetime, str, str, dict[str, Any]]] = []
        #: the MQA decision once recorded (`Qualified`): never taken back or decided again
        self.mqa: dict[str, Any] | None = None
        #: the leads matched to it as recorded (`MemberDecided`): lead id -> (rule, reason)
        self.members: dict[str, tuple[str, str]] = {}

    @staticmethod
    def create_id(key: str) -> UUID:
        return account_id(key)

    def record(
        self, *, event_id: str, source: str, occurred_at: datetime, data: dict[str, Any]
    ) -> Recorded:
        """Record one update; a duplicate when this (source, id) was already recorded.

        Raises `EventConflict` when it was recorded with other content."""
        new = _content(occurred_at, self.key, data)
        known = identity.lookup(self.seen, source, event_id)
        if known is not None:
            identity.check_same(known, new, source=source, event_id=event_id)
            return Recorded.DUPLICATE
        self.trigger_event(
            self.Updated, event_id=event_id, source=source, occurred_at=occurred_at, data=data
        )
        return Recorded.ACCEPTED

    def qualify(
        self,
        *,
        occurred_at: datetime,
        trigger_event_id: str,
        rules_version: str,
        reason: str,
        score: float,
        fit: float,
        engagement: float,
        members: int,
        engaged: int,
    ) -> bool:
        """Record the MQA decision (docs/accounts.md); False (nothing recorded) when one is
        recorded already: an account qualifies once."""
        if self.mqa is not None:
            return False
        self.trigger_event(
            self.Qualified,
            occurred_at=occurred_at,
            trigger_event_id=trigger_event_id,
            rules_version=rules_version,
            reason=reason,
            score=score,
            fit=fit,
            engagement=engagement,
            members=members,
            engaged=engaged,
        )
        return True

    def decide_member(
        self,
        *,
        lead_id: str,
        joined: bool,
        rule: str | None,
        reason: str,
        candidates: list[str],
        rules_version: str,
        decided_at: datetime | None,
    ) -> bool:
        """Record a lead-to-account match decision about this account: the lead joins (with
        the rule and reason) or leaves it; False (nothing recorded) when it changes nothing
        (joined already by that rule: a new reason alone is no new decision)."""
        if joined:
            assert rule is not None
            if lead_id in self.members and self.members[lead_id][0] == rule:
                return False
        elif lead_id not in self.members:
            return False
        self.trigger_event(
            self.MemberDecided,
            lead_id=lead_id,
            joined=joined,
            rule=rule,
            reason=reason,
            candidates=candidates,
            rules_version=rules_version,
            decided_at=decided_at,
        )
        return True

    class MemberDecided(Aggregate.Event):
        """A lead-to-account match decision (docs/accounts.md): the lead (its id: a keyed
        hash) joined this account by `rule`, or left it (matched elsewhere, or nowhere)."""

        lead_id: str
        joined: bool
        rule: str | None
        reason: str
        candidates: list[str]
        rules_version: str
        decided_at: datetime | None

        def apply(self, aggregate: Account) -> None:
            if self.joined:
                assert self.rule is not None
                aggregate.members[self.lead_id] = (self.rule, self.reason)
            else:
                aggregate.members.pop(self.lead_id, None)

    class Qualified(Aggregate.Event):
        """The account became a marketing-qualified account: its trigger (the input that made
        it qualify), the rules that decided, and the score then."""

        occurred_at: datetime
        trigger_event_id: str
        rules_version: str
        reason: str
        score: float
        fit: float
        engagement: float
        members: int
        engaged: int

        def apply(self, aggregate: Account) -> None:
            aggregate.mqa = mqa_of(self)

    class Updated(Aggregate.Event):
        event_id: str
        source: str
        occurred_at: datetime
        data: dict[str, Any]

        def apply(self, aggregate: Account) -> None:
            aggregate.seen[(self.source, self.event_id)] = _content(
                self.occurred_at, aggregate.key, self.data
            )
            aggregate.updates.append((self.occurred_at, self.source, self.event_id, self.data))


def _content(at: datetime, key: str, data: dict[str, Any]) -> dict[str, Any]:
    return identity.content("account.updated", at, data, subject=key)


def mqa_of(event: Account.Qualified) -> dict[str, Any]:
    """The stored MQA decision as `account_state.mqa` keeps it (JSON)."""
    return {
        "at": event.occurred_at.isoformat(),
        "trigger": event.trigger_event_id,
        "rules": event.rules_version,
        "reason": event.reason,
        "version": event.originator_version,
    }
