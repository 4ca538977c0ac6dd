"""What a report needs to know about each lead: touches, stage moves, sales milestones, costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from engine.domain.currency import NO_CURRENCY
from engine.domain.lifecycle import FUNNEL, RANK

#: Touch types that are not the lead's own engagement, left out of attribution paths.
NOT_ENGAGEMENT = ("touch.email_sent", "touch.email_bounced", "touch.unsubscribed")
NO_TOUCH = "(no touchpoint)"
UNKNOWN = "(none)"
#: what a touch is grouped by in reports (Touchpoint.key)
_BY = frozenset({"channel", "campaign", "content"})


@dataclass(frozen=True, slots=True)
class Touchpoint:
    """One touch: `at` when it happened, `seq` its arrival order (breaks ties in time)."""

    at: datetime
    seq: int
    type: str
    channel: str
    campaign: str | None = None
    content: str | None = None
    rep: str | None = None

    def key(self, by: str) -> str:
        if by not in _BY:
            raise KeyError(by)
        value: str | None = getattr(self, by)
        return value or UNKNOWN


@dataclass(frozen=True, slots=True)
class Move:
    """A stage change the engine decided."""

    at: datetime
    from_stage: str
    to_stage: str
    reason: str


@dataclass(frozen=True, slots=True)
class Milestone:
    """A lead fact that is not a touch: capture, owner, sales decisions, opportunity, deals."""

    at: datetime
    type: str
    actor: str | None = None
    reason: str | None = None
    amount: Decimal | None = None
    currency: str | None = None


@dataclass(slots=True)
class Journey:
    """Everything one lead did and went through, each list in the order it happened."""

    key: str
    touches: list[Touchpoint] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    milestones: list[Milestone] = field(default_factory=list)
    routed: list[datetime] = field(default_factory=list)
    #: a person of several leads: where its furthest lead stands (docs/identity.md)
    stage_now: str | None = None

    def sort(self) -> None:
        self.touches.sort(key=lambda t: (t.at, t.seq))
        self.moves.sort(key=lambda m: m.at)
        self.milestones.sort(key=lambda m: m.at)
        self.routed.sort()

    def reached_at(self, stage: str) -> datetime | None:
        """When the lead first reached `stage`; reaching a later funnel stage counts (skips)."""
        if stage in RANK:
            rank = RANK[stage]
            times = [m.at for m in self.moves if RANK.get(m.to_stage, -1) >= rank]
        else:
            times = [m.at for m in self.moves if m.to_stage == stage]
        return min(times) if times else None

    @property
    def source(self) -> Touchpoint | None:
        """The lead's first touch of any kind: its source channel and campaign."""
        return self.touches[0] if self.touches else None

    def won(self) -> list[Milestone]:
        return [m for m in self.milestones if m.type == "deal.won"]

    def revenue(self, until: datetime | None = None) -> dict[str, Decimal]:
        """The won deals (up to `until`) summed per currency, never across currencies (a deal
        without a currency counts under `XXX`, ISO 4217's "no currency")."""
        total: dict[str, Decimal] = {}
        for m in self.won():
            if until is None or m.at <= until:
                cur = m.currency or NO_CURRENCY
                total[cur] = total.get(cur, Decimal(0)) + (m.amount or Decimal(0))
        return total

    def first(self, milestone_type: str) -> Milestone | None:
        return next((m for m in self.milestones if m.type == milestone_type), None)


@dataclass(frozen=True, slots=True)
class Cost:
    campaign: str
    channel: str
    amount: Decimal
    currency: str
    period_start: date
    period_end: date


@dataclass(slots=True)
class Dataset:
    """The journeys and costs known at `as_of` (None: everything recorded so far)."""

    journeys: list[Journey]
    costs: list[Cost]
    as_of: datetime | None = None


FUNNEL_STAGES = FUNNEL[1:]
