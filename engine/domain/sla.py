"""SLA timers, derived (never stored) from the facts as of any moment.

A routed lead owes two things, counted in business hours from the routing: a first sales touch
and a decision (accepted, rejected, qualified or disqualified). Each timer is `met` (done in
time), `breached` (done late, or not done and overdue), `at_risk` (not done, past the at-risk
share of its allowance) or `pending`. The same facts and the same moment always give the same
answer, so an SLA report can be replayed for any past day.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.domain.facts import Fact
from engine.domain.rules import BusinessHours, Sla

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DECISIONS = frozenset({"sales.accepted", "sales.rejected", "sales.qualified", "sales.disqualified"})


def _windows(start: datetime, bh: BusinessHours) -> Iterator[tuple[datetime, datetime]]:
    """Business-hour windows (open, close) from the day of `start` on, in UTC-aware datetimes."""
    tz = ZoneInfo(bh.timezone)
    day = start.astimezone(tz).date()
    open_days = {DAYS.index(d) for d in bh.days}
    for _ in range(3660):  # ten years of days: far beyond any SLA
        if day.weekday() in open_days:
            opens = datetime(day.year, day.month, day.day, bh.start_hour, tzinfo=tz)
            closes = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
                hours=bh.end_hour
            )
            yield opens, closes
        day += timedelta(days=1)


def add_business_hours(start: datetime, hours: float, bh: BusinessHours) -> datetime:
    """The moment `hours` business hours after `start`."""
    left = timedelta(hours=hours)
    for opens, closes in _windows(start, bh):
        begin = max(opens, start)
        if begin >= closes:
            continue
        room = closes - begin
        if left <= room:
            return (begin + left).astimezone(start.tzinfo)
        left -= room
    raise ValueError("SLA allowance too long")  # pragma: no cover


def business_hours_between(start: datetime, end: datetime, bh: BusinessHours) -> float:
    if end <= start:
        return 0.0
    total = timedelta(0)
    for opens, closes in _windows(start, bh):
        if opens >= end:
            break
        begin, finish = max(opens, start), min(closes, end)
        if finish > begin:
            total += finish - begin
    return total.total_seconds() / 3600


@dataclass(frozen=True, slots=True)
class Timer:
    name: str
    due: datetime
    done_at: datetime | None
    status: str  # met | breached | at_risk | pending

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "due": self.due.isoformat(),
            "done_at": self.done_at.isoformat() if self.done_at else None,
            "status": self.status,
        }


def timer(
    name: str,
    start: datetime,
    allowance: float,
    done_at: datetime | None,
    as_of: datetime,
    sla: Sla,
) -> Timer:
    bh = sla.business_hours
    due = add_business_hours(start, allowance, bh)
    if done_at is not None and done_at <= as_of:
        return Timer(name, due, done_at, "met" if done_at <= due else "breached")
    if as_of > due:
        return Timer(name, due, None, "breached")
    used = business_hours_between(start, as_of, bh)
    return Timer(name, due, None, "at_risk" if used >= sla.at_risk_after * allowance else "pending")


@dataclass(frozen=True, slots=True)
class SlaState:
    owner: str
    queue: str
    routed_at: datetime
    first_touch: Timer
    decision: Timer

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "queue": self.queue,
            "routed_at": self.routed_at.isoformat(),
            "first_touch": self.first_touch.as_dict(),
            "decision": self.decision.as_dict(),
        }


def first_touch_at(facts: list[Fact], routed_at: datetime, owner: str, sla: Sla) -> datetime | None:
    times = [
        f.occurred_at
        for f in facts
        if f.type in sla.first_touch_types
        and f.occurred_at >= routed_at
        and (not sla.owner_only or f.data.get("rep") == owner)
    ]
    return min(times) if times else None


def decided_at(facts: list[Fact], routed_at: datetime) -> datetime | None:
    times = [f.occurred_at for f in facts if f.type in DECISIONS and f.occurred_at >= routed_at]
    return min(times) if times else None


def sla_state(
    facts: list[Fact],
    routings: list[tuple[datetime, str, str]],
    sla: Sla,
    as_of: datetime,
) -> SlaState | None:
    """The SLA of the latest routing round at or before `as_of`, or None if not routed then."""
    rounds = [r for r in routings if r[0] <= as_of]
    if not rounds:
        return None
    routed_at, owner, queue = rounds[-1]
    touch = first_touch_at(facts, routed_at, owner, sla)
    decision = decided_at(facts, routed_at)
    return SlaState(
        owner,
        queue,
        routed_at,
        timer("first_touch", routed_at, sla.first_touch_hours, touch, as_of, sla),
        timer("decision", routed_at, sla.decision_hours, decision, as_of, sla),
    )
