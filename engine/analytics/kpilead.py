"""What the KPIs read of one person: its rows as columns (one sequence per field), the shape
`kpiread` streams from PostgreSQL as arrays, so a report builds no object per touch.

`kpi_lead` makes the same columns from a `Journey`, the reference: `KpiTally` reads only
these, so the in-memory, the journey-streamed and the array-streamed KPIs are one computation
(tests/property/test_streamed_kpis.py, tests/integration/test_streamed_reports.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.analytics.followup import EMAIL
from engine.analytics.journeys import UNKNOWN, Journey, Touchpoint
from engine.domain.lifecycle import RANK


@dataclass(frozen=True, slots=True)
class KpiLead:
    """One person's touches, stage moves, milestones and routings, each field a sequence in the
    order `Journey.sort` leaves them. `touch_key` is each touch's `Touchpoint.key(by)` for the
    report's grouping; `email_campaign` its `key("campaign")` for an e-mail touch (EMAIL), None
    for any other."""

    key: str
    touch_at: Sequence[datetime]
    touch_type: Sequence[str]
    touch_key: Sequence[str]
    email_campaign: Sequence[str | None]
    move_at: Sequence[datetime]
    move_to: Sequence[str]
    milestone_at: Sequence[datetime]
    milestone_type: Sequence[str]
    milestone_reason: Sequence[str | None]
    milestone_amount: Sequence[Decimal | None]
    milestone_currency: Sequence[str | None]
    routed: Sequence[datetime]


def kpi_lead(j: Journey, by: str) -> KpiLead:
    """`j`'s columns, touches keyed by `by` (a wrong `by` raises KeyError, as `key` does)."""
    ts, ms = j.touches, j.milestones
    return KpiLead(
        j.key,
        [t.at for t in ts],
        [t.type for t in ts],
        [t.key(by) for t in ts],
        [t.key("campaign") if t.type in EMAIL else None for t in ts],
        [m.at for m in j.moves],
        [m.to_stage for m in j.moves],
        [m.at for m in ms],
        [m.type for m in ms],
        [m.reason for m in ms],
        [m.amount for m in ms],
        [m.currency for m in ms],
        list(j.routed),
    )


def _reaching() -> dict[str, tuple[str, ...]]:
    """For each stage a move goes to, the stages it reaches (`Journey.reached_at`): a funnel
    stage reaches itself and every funnel stage before it (skips), any other stage itself."""
    return {s: tuple(r for r, rank in RANK.items() if rank <= RANK[s]) for s in RANK}


_REACHES = _reaching()


def first_reached(move_at: Sequence[datetime], move_to: Sequence[str]) -> dict[str, datetime]:
    """Every stage the moves reach -> the first moment they did (`Journey.reached_at` for all
    stages at once; a stage not reached is absent)."""
    out: dict[str, datetime] = {}
    for at, to in zip(move_at, move_to, strict=True):
        for stage in _REACHES.get(to, (to,)):
            first = out.get(stage)
            if first is None or at < first:
                out[stage] = at
    return out


def touchpoint(at: datetime, key: str, by: str) -> Touchpoint:
    """A path's touch as the attribution models read it: its time and its key by `by`."""
    if by == "channel":
        return Touchpoint(at, 0, "", key)
    if by == "campaign":
        return Touchpoint(at, 0, "", UNKNOWN, key)
    return Touchpoint(at, 0, "", UNKNOWN, None, key)
