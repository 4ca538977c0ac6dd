"""Funnel and lifecycle KPIs: stage counts and conversion, time in stage, sales cycle, lead flow.

The cohort of a funnel report is the leads created (first reached `lead`) in [start, end);
lead flow counts stage entries that happened in [start, end). Stages reached by a skip count
as reached at the moment of the skip, as in `report funnel`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.analytics.journeys import FUNNEL_STAGES, UNKNOWN, Dataset, Journey
from engine.analytics.stats import days, pct, percentile, r2
from engine.domain.lifecycle import STAGES


def within(at: datetime | None, start: datetime | None, end: datetime | None) -> bool:
    return at is not None and (start is None or at >= start) and (end is None or at < end)


def cohort(ds: Dataset, start: datetime | None, end: datetime | None) -> list[Journey]:
    return [j for j in ds.journeys if within(j.reached_at("lead"), start, end)]


def stages(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Per funnel stage: leads of the cohort that reached it, conversion from the stage before,
    and the time spent in it (completed stays: median and p90 in days)."""
    leads = cohort(ds, start, end)
    stays = time_in_stage(leads)
    out: list[dict[str, Any]] = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        reached = sum(1 for j in leads if j.reached_at(stage) is not None)
        durations = stays.get(stage, [])
        out.append(
            {
                "stage": stage,
                "reached": reached,
                "conversion_pct": pct(reached, previous) if previous is not None else None,
                "stays": len(durations),
                "median_days": r2(percentile(durations, 0.5)),
                "p90_days": r2(percentile(durations, 0.9)),
            }
        )
        previous = reached
    return out


def time_in_stage(leads: list[Journey]) -> dict[str, list[float]]:
    """Days between entering a stage and leaving it, for every completed stay of every lead."""
    stays: dict[str, list[float]] = defaultdict(list)
    for j in leads:
        for move, after in zip(j.moves, j.moves[1:], strict=False):
            stays[move.to_stage].append(days(after.at - move.at))
    return stays


def data_moment(ds: Dataset) -> datetime | None:
    """The "now" of the data: the latest moment anything in it happened."""
    moments = [
        at
        for j in ds.journeys
        for at in (
            *(t.at for t in j.touches[-1:]),
            *(m.at for m in j.moves[-1:]),
            *(m.at for m in j.milestones[-1:]),
            *j.routed[-1:],
        )
    ]
    return max(moments) if moments else None


def open_stays(leads: list[Journey], until: datetime | None) -> dict[str, list[float]]:
    """Days each lead has sat in its current stage, up to `until` (stays not finished yet)."""
    stays: dict[str, list[float]] = defaultdict(list)
    if until is None:
        return stays
    for j in leads:
        if j.moves:
            last = j.moves[-1]
            stays[last.to_stage].append(days(max(until - last.at, timedelta(0))))
    return stays


def exits(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Time in the exit stages (nurture, recycled, disqualified, lost) for the same cohort:
    completed stays (the lead has moved on), and open stays (the lead is still there), measured
    up to the data's moment (`data_moment`: the latest thing that happened in the data read)."""
    leads = cohort(ds, start, end)
    stays = time_in_stage(leads)
    sitting = open_stays(leads, data_moment(ds))
    return [
        {
            "stage": s,
            "stays": len(stays.get(s, [])),
            "median_days": r2(percentile(stays.get(s, []), 0.5)),
            "p90_days": r2(percentile(stays.get(s, []), 0.9)),
            "open": len(sitting.get(s, [])),
            "open_median_days": r2(percentile(sitting.get(s, []), 0.5)),
        }
        for s in STAGES
        if s not in FUNNEL_STAGES and s != "anonymous"
    ]


def sales_cycle(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """Days from lead creation to customer for the cohort's customers."""
    lengths = []
    for j in cohort(ds, start, end):
        created, won = j.reached_at("lead"), j.reached_at("customer")
        if created is not None and won is not None:
            lengths.append(days(won - created))
    return {
        "customers": len(lengths),
        "average_days": r2(sum(lengths) / len(lengths)) if lengths else None,
        "median_days": r2(percentile(lengths, 0.5)),
        "shortest_days": r2(min(lengths)) if lengths else None,
        "longest_days": r2(max(lengths)) if lengths else None,
    }


def period_start(at: datetime, period: str) -> str:
    """The UTC month (2026-03) or the Monday of the UTC week (2026-03-02) of `at`."""
    at = at.astimezone(UTC)
    if period == "month":
        return f"{at.year:04d}-{at.month:02d}"
    monday = (at - timedelta(days=at.weekday())).date()
    return monday.isoformat()


def source_of(j: Journey, by: str) -> str:
    first = j.source
    return first.key(by) if first else UNKNOWN


def lead_flow(
    ds: Dataset,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    period: str = "month",
    by: str = "channel",
) -> list[dict[str, Any]]:
    """Stage entries per week or month and source channel (campaign): how leads flow."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(FUNNEL_STAGES, 0)
    )
    for j in ds.journeys:
        group = source_of(j, by)
        for stage in FUNNEL_STAGES:
            at = j.reached_at(stage)
            if within(at, start, end):
                assert at is not None
                counts[(period_start(at, period), group)][stage] += 1
    return [{period: p, f"source_{by}": g, **c} for (p, g), c in sorted(counts.items())]


def by_source(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None, *, by: str = "channel"
) -> list[dict[str, Any]]:
    """The funnel per source channel (campaign) of the cohort: reached per stage, lead to
    customer conversion and the average sales cycle."""
    groups: dict[str, list[Journey]] = defaultdict(list)
    for j in cohort(ds, start, end):
        groups[source_of(j, by)].append(j)
    out = []
    for group, leads in sorted(groups.items()):
        reached = {s: sum(1 for j in leads if j.reached_at(s) is not None) for s in FUNNEL_STAGES}
        cycles = [
            days(won - created)
            for j in leads
            if (created := j.reached_at("lead")) and (won := j.reached_at("customer"))
        ]
        out.append(
            {
                f"source_{by}": group,
                **reached,
                "lead_to_customer_pct": pct(reached["customer"], reached["lead"]),
                "cycle_average_days": r2(sum(cycles) / len(cycles)) if cycles else None,
            }
        )
    return out


EXIT_STAGES = ("nurture", "recycled", "disqualified", "lost")


def current_stage(j: Journey) -> str:
    """Where the lead stood after its last move in the dataset (no move: still anonymous); a
    person of several leads: where the lead that got furthest stands (docs/identity.md)."""
    if j.stage_now is not None:
        return j.stage_now
    return j.moves[-1].to_stage if j.moves else "anonymous"


def snapshot(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """`report funnel` over a dataset: the leads created in [start, end) (every lead known when
    neither is given), the funnel stages each reached, and where each stood at the dataset's
    cut. Same document as the read model's `engine.analytics.queries.funnel`."""
    leads = cohort(ds, start, end) if start or end else ds.journeys
    now: dict[str, int] = defaultdict(int)
    for j in leads:
        now[current_stage(j)] += 1
    out: list[dict[str, Any]] = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        reached = sum(1 for j in leads if j.reached_at(stage) is not None)
        out.append(
            {
                "stage": stage,
                "reached": reached,
                "conversion_pct": pct(reached, previous) if previous else None,
                "now": now.get(stage, 0),
            }
        )
        previous = reached
    return {
        "leads_total": len(leads),
        "anonymous_now": now.get("anonymous", 0),
        "stages": out,
        "exits_now": {s: now.get(s, 0) for s in EXIT_STAGES},
    }


class SnapshotTally:
    """`snapshot` over journeys fed one at a time (`add`), e.g. streamed lead by lead from the
    read model: the same document, holding one count per stage, never the journeys (so memory
    does not grow with the leads). `snapshot` stays the reference:
    tests/property/test_streamed_funnel.py proves the two equal."""

    def __init__(self, start: datetime | None = None, end: datetime | None = None) -> None:
        self.start, self.end = start, end
        self.cut = bool(start or end)
        self.leads = 0
        self.now: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()

    def add(self, j: Journey) -> None:
        reached = {s: at for s in FUNNEL_STAGES if (at := j.reached_at(s)) is not None}
        self.add_stages(reached, current_stage(j))

    def add_stages(self, reached: Mapping[str, datetime], now: str) -> None:
        """One lead (person) as the first moment it reached each funnel stage it reached, and
        the stage it stands in now (`current_stage`)."""
        if self.cut and not within(reached.get("lead"), self.start, self.end):
            return
        self.leads += 1
        self.now[now] += 1
        for stage in FUNNEL_STAGES:
            if stage in reached:
                self.reached[stage] += 1

    def document(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        previous: int | None = None
        for stage in FUNNEL_STAGES:
            reached = self.reached[stage]
            out.append(
                {
                    "stage": stage,
                    "reached": reached,
                    "conversion_pct": pct(reached, previous) if previous else None,
                    "now": self.now.get(stage, 0),
                }
            )
            previous = reached
        return {
            "leads_total": self.leads,
            "anonymous_now": self.now.get("anonymous", 0),
            "stages": out,
            "exits_now": {s: self.now.get(s, 0) for s in EXIT_STAGES},
        }


def snapshot_of(
    journeys: Iterable[Journey], start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """`snapshot` over journeys taken one at a time (`SnapshotTally`)."""
    tally = SnapshotTally(start, end)
    for j in journeys:
        tally.add(j)
    return tally.document()
