"""The Account aggregate: an account's firmographics as the CRM sent them (`account.updated`).

Every update is kept whole; the profile is folded from them by
`engine.domain.accounts.profile`, field by field from the latest-dated update that names it, so
the order updates arrive in never changes an account (replays and late deliveries agree).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE, Recorded
from engine.domain import identity


def account_id(key: str) -> UUID:
    return uuid5(NAMESPACE, f"account:{key}")


#: a provisional account's key is this and its domain: no CRM id starts so (the contract's
#: account ids are letters, digits and `_.:-`), so it never collides with a CRM account
PROVISIONAL = "provisional/"
#: the `source` of the updates the engine records on a provisional account
PROVISIONAL_SOURCE = "leadengine/provisional"


def provisional_key(domain: str) -> str:
    return PROVISIONAL + domain


def is_provisional(key: str) -> bool:
    return key.startswith(PROVISIONAL)


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
        #: a provisional account: the unmatched leads on its domain seen (`LeadNoted`)
        self.noted: set[str] = set()

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
        baseline: bool = False,
    ) -> bool:
        """Record a lead-to-account match decision about this account: the lead joins (with
        the rule and reason) or leaves it; False (nothing recorded) when it changes nothing
        (joined already by that rule: a new reason alone is no new decision). `baseline`: the
        lead's match as it was before a decision changes it, recorded only when this account
        has no join of the lead recorded (matched before migration 22: without it a replay
        could not tell where the lead was before its first recorded decision)."""
        if baseline:
            if not joined or lead_id in self.members:
                return False
        elif joined:
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
            baseline=baseline,
        )
        return True

    @property
    def provisional(self) -> bool:
        return is_provisional(self.key)

    @property
    def opened(self) -> bool:
        """A provisional account opened (its domain claimed): it has an update."""
        return bool(self.updates)

    @property
    def adopted_by(self) -> str | None:
        """The CRM account that adopted this provisional one (claims its domain now); None
        when never adopted or released since (the CRM account dropped the domain)."""
        state = None
        for _at, source, _id, data in sorted(self.updates, key=lambda u: (u[0], u[1], u[2])):
            if source == PROVISIONAL_SOURCE and ("adopted_by" in data or "released_by" in data):
                state = data.get("adopted_by")
        return str(state) if state else None

    @property
    def closed(self) -> bool:
        """A provisional account released by its adopter while its noted leads were fewer than
        `min_leads` people: it claims nothing and no account adopted it; it opens again
        (`reopen`) when its noted leads are `min_leads` people again."""
        state = False
        for _at, source, _id, data in sorted(self.updates, key=lambda u: (u[0], u[1], u[2])):
            if source == PROVISIONAL_SOURCE and _CLAIM_KEYS.intersection(data):
                state = bool(data.get("closed"))
        return state

    def _next_time(self, occurred_at: datetime) -> datetime:
        """A time for an engine-recorded update folded after every update so far, whatever
        `occurred_at` is (equal times would fold by event id, not by when it was decided)."""
        latest = max(u[0] for u in self.updates)
        return occurred_at if occurred_at > latest else latest + timedelta(microseconds=1)

    def _unique_id(self, event_id: str) -> str:
        """`event_id`, or with the update count when an earlier update has it (an account
        adopted, released and adopted again by the same CRM account)."""
        used = {u[2] for u in self.updates}
        return event_id if event_id not in used else f"{event_id}@{len(self.updates)}"

    def note_lead(self, *, lead_id: str, occurred_at: datetime) -> bool:
        """A provisional account: note an unmatched lead on its domain (False: noted before)."""
        assert self.provisional
        if lead_id in self.noted:
            return False
        self.trigger_event(self.LeadNoted, lead_id=lead_id, occurred_at=occurred_at)
        return True

    def open(self, *, occurred_at: datetime, leads: int, persons: int | None = None) -> bool:
        """Open the provisional account: it claims its domain (an update recorded by the
        engine, named after the domain); False when open already."""
        assert self.provisional
        if self.opened:
            return False
        domain = self.key.removeprefix(PROVISIONAL)
        data: dict[str, Any] = {
            "name": domain,
            "domains": [domain],
            "provisional": True,
            "leads": leads,
        }
        if persons is not None:
            data["persons"] = persons  # the people they are (two keys of one person: one)
        self.record(
            event_id=f"open:{domain}", source=PROVISIONAL_SOURCE, occurred_at=occurred_at, data=data
        )
        return True

    def adopt(self, *, by: str, occurred_at: datetime) -> bool:
        """A CRM account claims this provisional account's domain: it gives the domain up, so
        its leads match the CRM account (their moves are match decisions, recorded as ever).
        False when it is not open (never opened, or closed) or was adopted already."""
        assert self.provisional
        if not self.opened or self.closed or self.adopted_by is not None:
            return False
        self.record(
            event_id=self._unique_id(f"adopted-by:{by}"),
            source=PROVISIONAL_SOURCE,
            occurred_at=self._next_time(occurred_at),  # folded after the opening, whatever the time
            data={"domains": [], "adopted_by": by},
        )
        return True

    def release(
        self,
        *,
        by: str,
        occurred_at: datetime,
        leads: int | None = None,
        persons: int | None = None,
        min_leads: int = 0,
    ) -> bool:
        """The CRM account `by` that adopted this provisional account dropped its domain and no
        other account claims it. Decided by the rules as at opening: when its noted leads
        (`leads`) are still at least `min_leads` people (`persons`), it claims its domain again
        (its leads match it by domain again, each move a recorded match decision); else it
        stays closed, claiming nothing (`closed`), until noted leads reach `min_leads` people
        again (`reopen`). Either way a recorded update with the counts. Without counts (the
        adoption moving to another account, which adopts it at once) it claims its domain
        again. False when `by` is not the account that adopted it."""
        assert self.provisional
        if self.adopted_by != by:
            return False
        domain = self.key.removeprefix(PROVISIONAL)
        counts: dict[str, Any] = {"released_by": by}
        if persons is not None:
            counts |= {"leads": leads, "persons": persons}
        reopens = persons is None or persons >= min_leads
        data: dict[str, Any] = (
            {"domains": [domain], **counts}
            if reopens
            else {"domains": [], **counts, "closed": True, "min_leads": min_leads}
        )
        self.record(
            event_id=self._unique_id(f"{'released' if reopens else 'closed'}-by:{by}"),
            source=PROVISIONAL_SOURCE,
            occurred_at=self._next_time(occurred_at),
            data=data,
        )
        return True

    def reopen(self, *, occurred_at: datetime, leads: int, persons: int) -> bool:
        """A closed provisional account whose noted leads are `min_leads` people again claims
        its domain again (a recorded update with the counts); False when it is not closed."""
        assert self.provisional
        if not self.closed:
            return False
        domain = self.key.removeprefix(PROVISIONAL)
        self.record(
            event_id=self._unique_id(f"reopened:{domain}"),
            source=PROVISIONAL_SOURCE,
            occurred_at=self._next_time(occurred_at),
            data={"domains": [domain], "reopened": True, "leads": leads, "persons": persons},
        )
        return True

    class LeadNoted(Aggregate.Event):
        """An unmatched lead on a provisional account's domain (by its id: a keyed hash)."""

        lead_id: str
        occurred_at: datetime

        def apply(self, aggregate: Account) -> None:
            aggregate.noted.add(self.lead_id)

    class MemberDecided(Aggregate.Event):
        """A lead-to-account match decision (docs/accounts.md): the lead (its id: a keyed
        hash) joined this account by `rule`, or left it (matched elsewhere, or nowhere).
        Version 2 adds `baseline` (a match taken before decisions were recorded, recorded
        when a decision first changes it); version 1 events read it as False."""

        class_version = 2

        lead_id: str
        joined: bool
        rule: str | None
        reason: str
        candidates: list[str]
        rules_version: str
        decided_at: datetime | None
        baseline: bool

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["baseline"] = False

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


#: the keys of the engine's updates that change who claims a provisional account's domain
_CLAIM_KEYS = frozenset({"adopted_by", "released_by", "reopened"})


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
