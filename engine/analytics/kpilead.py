"""What the KPIs read of one person: its rows as columns (one sequence per field), the shape
`kpiread` streams from PostgreSQL as arrays, so a report builds no object per touch.

`kpi_lead` makes the same columns from a `Journey`, the reference: `KpiTally` reads only
these, so the in-memory, the journey-streamed and the array-streamed KPIs are one computation
(tests/property/test_streamed_kpis.py, tests/integration/test_streamed_reports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.analytics.followup import CALL, EMAIL
from engine.analytics.journeys import UNKNOWN, Journey, Touchpoint
from engine.domain.lifecycle import RANK

#: decodes one array column (PostgreSQL's binary array, `array_send`) into a list
Decode = Callable[[bytes], list[Any]]


class KpiLead:
    """One person's touches, stage moves, milestones and routings, each field a sequence in the
    order `Journey.sort` leaves them, plus what every person needs of its touches: `source`
    (its first touch's key, `funnel.source_of`), `latest` (when its last row of any kind
    happened) and `touches` (how many). `touch_key` is each touch's `Touchpoint.key(by)` for
    the report's grouping, `email_campaign` its `key("campaign")` for an e-mail touch
    (EMAIL), None for any other; `call_at` the times of its calls (CALL), `sales_at` those of
    its touches of the first-touch types (speed to lead).

    The touch columns may come undecoded (bytes and a `Decode` each, from `kpiread`): they
    are decoded when first read, so a person whose touches no KPI reads costs no object per
    touch."""

    __slots__ = (
        "_decode",
        "_touch",
        "key",
        "latest",
        "milestone_amount",
        "milestone_at",
        "milestone_currency",
        "milestone_reason",
        "milestone_type",
        "move_at",
        "move_to",
        "routed",
        "source",
        "touches",
    )  # fmt: skip

    def __init__(
        self,
        key: str,
        source: str,
        latest: datetime | None,
        touches: int,
        touch: Sequence[Sequence[Any] | bytes],
        moves: tuple[Sequence[datetime], Sequence[str]],
        milestones: tuple[
            Sequence[datetime],
            Sequence[str],
            Sequence[str | None],
            Sequence[Decimal | None],
            Sequence[str | None],
        ],
        routed: Sequence[datetime],
        decode: Sequence[Decode] = (),
    ) -> None:
        self.key, self.source, self.latest, self.touches = key, source, latest, touches
        self._touch = list(touch)  # at, type, key, email campaign, calls, sales touches
        self._decode = decode
        self.move_at, self.move_to = moves
        (
            self.milestone_at,
            self.milestone_type,
            self.milestone_reason,
            self.milestone_amount,
            self.milestone_currency,
        ) = milestones
        self.routed = routed

    def _column(self, i: int) -> Sequence[Any]:
        column = self._touch[i]
        if isinstance(column, bytes):
            column = self._touch[i] = self._decode[i](column)
        return column

    @property
    def touch_at(self) -> Sequence[datetime]:
        return self._column(0)

    @property
    def touch_type(self) -> Sequence[str]:
        return self._column(1)

    @property
    def touch_key(self) -> Sequence[str]:
        return self._column(2)

    @property
    def email_campaign(self) -> Sequence[str | None]:
        return self._column(3)

    @property
    def call_at(self) -> Sequence[datetime]:
        return self._column(4)

    @property
    def sales_at(self) -> Sequence[datetime]:
        return self._column(5)


def kpi_lead(j: Journey, by: str, first_touch: Collection[str]) -> KpiLead:
    """`j`'s columns, touches keyed by `by` (a wrong `by` raises KeyError, as `key` does),
    `sales_at` of the `first_touch` types."""
    ts, ms = j.touches, j.milestones
    lasts = [
        *(t.at for t in ts[-1:]),
        *(m.at for m in j.moves[-1:]),
        *(m.at for m in ms[-1:]),
        *j.routed[-1:],
    ]
    return KpiLead(
        j.key,
        ts[0].key(by) if ts else UNKNOWN,
        max(lasts) if lasts else None,
        len(ts),
        (
            [t.at for t in ts],
            [t.type for t in ts],
            [t.key(by) for t in ts],
            [t.key("campaign") if t.type in EMAIL else None for t in ts],
            [t.at for t in ts if t.type == CALL],
            [t.at for t in ts if t.type in first_touch],
        ),
        ([m.at for m in j.moves], [m.to_stage for m in j.moves]),
        (
            [m.at for m in ms],
            [m.type for m in ms],
            [m.reason for m in ms],
            [m.amount for m in ms],
            [m.currency for m in ms],
        ),
        list(j.routed),
    )


def _reaching() -> dict[str, tuple[str, ...]]:
    """For each stage a move goes to, the stages it reaches (`Journey.reached_at`): a funnel
    stage reaches itself and every funnel stage before it (skips), any other stage itself."""
    return {s: tuple(r for r, rank in RANK.items() if rank <= RANK[s]) for s in RANK}


_REACHES = _reaching()


def first_reached(move_at: Sequence[datetime], move_to: Sequence[str]) -> dict[str, datetime]:
    """Every stage the moves (in time order, as `Journey.sort` leaves them) reach -> the first
    moment they did (`Journey.reached_at` for all stages at once; one not reached is absent)."""
    out: dict[str, datetime] = {}
    for at, to in zip(move_at, move_to, strict=True):  # in time order: the first one counts
        for stage in _REACHES.get(to, (to,)):
            out.setdefault(stage, at)
    return out


def touchpoint(at: datetime, key: str, by: str) -> Touchpoint:
    """A path's touch as the attribution models read it: its time and its key by `by`."""
    if by == "channel":
        return Touchpoint(at, 0, "", key)
    if by == "campaign":
        return Touchpoint(at, 0, "", UNKNOWN, key)
    return Touchpoint(at, 0, "", UNKNOWN, None, key)


def furthest(
    move_at: Sequence[datetime],
    move_to: Sequence[str],
    move_rank: Sequence[int],
    move_lead: Sequence[str],
) -> str:
    """Where a person of several leads stands (`load.by_person`'s `stage_now`): the stage of
    the last move of its lead that got furthest (highest funnel rank, then latest last move;
    a tie: the lead met first, by `move_rank` then key); no move: `anonymous`. The moves come
    in the person's order (time, lead, version), so a lead's last is its last in the arrays."""
    leads: dict[tuple[int, str], tuple[int, datetime, str]] = {}
    for at, to, rank, lead in zip(move_at, move_to, move_rank, move_lead, strict=True):
        known = leads.get((rank, lead))
        top = RANK.get(to, 0)
        leads[(rank, lead)] = (max(top, known[0]) if known else top, at, to)
    best: tuple[int, datetime, str] | None = None
    for _, mine in sorted(leads.items()):
        if best is None or mine[:2] > best[:2]:
            best = mine
    return best[2] if best is not None else "anonymous"
