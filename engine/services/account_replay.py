"""A lead's recorded account match decisions, read back from the accounts' streams.

Decisions are recorded on the accounts (`Account.MemberDecided`), not on the lead, so finding a
lead's means looking through that event type for its id (in the database on PostgreSQL). What
they fold to at a moment is `engine.domain.accounts.replay.match_as_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from engine.aggregates.account import Account
from engine.domain.accounts.replay import RecordedDecision
from engine.postgres.store import by_topic, events_naming

if TYPE_CHECKING:
    from engine.services.application import LeadEngine


def lead_decisions(app: LeadEngine, lead_id: UUID) -> list[RecordedDecision]:
    """Every match decision recorded about the lead, on any account, in log order."""
    topic = get_topic(Account.MemberDecided)
    needle = str(lead_id)
    found: list[tuple[int, StoredEvent]] | None = events_naming(app.recorder, topic, needle)
    if found is None:  # the in-memory store: every decision, filtered below
        found = [(n.id, n) for n in by_topic(app.recorder, topic)]
    keys: dict[UUID, str] = {}
    out: list[RecordedDecision] = []
    for position, stored in found:
        event = app.mapper.to_domain_event(stored)
        assert isinstance(event, Account.MemberDecided)
        if event.lead_id != needle:
            continue
        account = UUID(str(stored.originator_id))
        if account not in keys:
            keys[account] = _account_key(app, account)
        out.append(
            RecordedDecision(
                account_key=keys[account],
                joined=event.joined,
                rule=event.rule,
                reason=event.reason,
                candidates=tuple(event.candidates),
                rules_version=event.rules_version,
                decided_at=event.decided_at,
                recorded_at=event.timestamp,
                position=position,
                baseline=event.baseline,
            )
        )
    return out


def _account_key(app: LeadEngine, account: UUID) -> str:
    """The account's key, from its first event (the account aggregate's id is a hash of it)."""
    (first,) = app.recorder.select_events(account, lte=1)
    started = app.mapper.to_domain_event(first)
    assert isinstance(started, Account.Started)
    return started.key
