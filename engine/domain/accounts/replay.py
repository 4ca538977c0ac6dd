"""A lead's account as of a past moment, folded from its recorded match decisions.

The projector records each change of a lead's account on the accounts concerned
(`Account.MemberDecided`: joined by a rule, or left). Those events are the history of the
match, so the account a lead was matched to at T is the fold of the decisions taken by T:
per account, the latest decision about it says whether the lead was in it; the lead is in the
account it joined last. Reading today's `account_members` row instead would show the match
now, not then (`lead explain --as-of`, docs/accounts.md).

A lead matched before decisions were recorded (migration 22) has its first match recorded as a
*baseline* when a decision first changes it (`baseline`): a join recorded then, not when it was
taken. It counts from its inputs' time (`decided_at`) on both clocks, the earliest it can have
been taken, and a replay that shows it says it was not recorded then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: which clock a moment is on: when the decision was recorded, or when its inputs happened
Clock = Literal["recorded", "occurred"]


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    """One `Account.MemberDecided` about a lead, with where and when it was recorded."""

    account_key: str
    joined: bool
    rule: str | None
    reason: str
    candidates: tuple[str, ...]
    rules_version: str
    decided_at: datetime | None  # the decision's time by its inputs (occurred clock)
    recorded_at: datetime  # when the engine recorded it (recorded clock)
    position: int  # its place in the log: orders decisions recorded at one time
    #: the match taken before decisions were recorded, recorded when first changed
    baseline: bool = False

    def at(self, clock: Clock) -> datetime:
        if self.baseline and self.decided_at is not None:  # taken then, recorded later
            return min(self.decided_at, self.recorded_at)
        if clock == "occurred" and self.decided_at is not None:
            return self.decided_at
        return self.recorded_at


@dataclass(frozen=True, slots=True)
class MatchAsOf:
    """The lead's account at the moment (`joined` None: in no account then), and the
    decision that took it out of its last account when it was in none (`left`)."""

    joined: RecordedDecision | None
    left: RecordedDecision | None
    decisions: int  # decisions taken by the moment


def match_as_of(
    decisions: Iterable[RecordedDecision], moment: datetime, clock: Clock = "recorded"
) -> MatchAsOf:
    """Fold the decisions taken by `moment` (on `clock`) into the account the lead was in.

    Pure and independent of the order `decisions` come in: they are sorted by their time on
    the clock, then their log position."""
    taken = sorted(
        (d for d in decisions if d.at(clock) <= moment),
        key=lambda d: (d.at(clock), d.position),
    )
    latest: dict[str, RecordedDecision] = {}
    for d in taken:
        latest[d.account_key] = d
    inside = [d for d in latest.values() if d.joined]
    if inside:  # one, but for a move caught between its two records: the later join
        joined = max(inside, key=lambda d: (d.at(clock), d.position))
        return MatchAsOf(joined, None, len(taken))
    left = taken[-1] if taken else None
    return MatchAsOf(None, left, len(taken))
