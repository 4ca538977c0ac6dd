"""Cost per funnel stage, revenue per customer, ROI and marketing revenue contribution.

Costs are prorated by day to the window (a monthly cost line half inside it counts half).
Leads, MQLs, SQLs and customers are counted by the lead's source (its first touch) and the
moment it first reached each stage; attributed revenue comes from the chosen model."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.analytics.attribution import Credits
from engine.analytics.funnel import _in, source_of
from engine.analytics.journeys import Cost, Dataset
from engine.analytics.paths import ReportError
from engine.currency import minor_unit

COUNTED = ("lead", "mql", "sql", "customer")


def prorated(cost: Cost, start: datetime | None, end: datetime | None) -> Decimal:
    """The part of a cost line whose period (dates, inclusive) falls in [start, end)."""
    first, last = cost.period_start, cost.period_end
    span = (last - first).days + 1
    lo = max(first, start.date()) if start else first
    # a window ending at midnight excludes that day; one ending later includes it
    hi_date: date = last
    if end is not None:
        edge = end.date() if end.time() == datetime.min.time() else end.date() + timedelta(days=1)
        hi_date = min(last, edge - timedelta(days=1))
    inside = (hi_date - lo).days + 1
    if inside <= 0 or span <= 0:
        return Decimal(0)
    return cost.amount * inside / span


def _div(a: Decimal, b: int | Decimal, unit: Decimal) -> Decimal | None:
    return (a / b).quantize(unit, ROUND_HALF_UP) if b else None


def _round(amount: Decimal | None, unit: Decimal) -> Decimal | None:
    return None if amount is None else amount.quantize(unit, ROUND_HALF_UP)


def money(
    ds: Dataset,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    by: str = "channel",
    attributed: Credits | None = None,
    currency: str | None = None,
) -> list[dict[str, Any]]:
    """One row per channel (or campaign) and a TOTAL row; money in the currency's minor unit
    (two decimals when several currencies are possible or none is known)."""
    currencies = {c.currency for c in ds.costs} | {
        m.currency for j in ds.journeys for m in j.won() if m.currency
    }
    if currency is None and len(currencies) > 1:
        raise ReportError(
            f"costs and deals are in several currencies ({', '.join(sorted(currencies))}); "
            "choose one with --currency"
        )
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for c in ds.costs:
        if currency is None or c.currency == currency:
            cost[getattr(c, by)] += prorated(c, start, end)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for j in ds.journeys:
        group = source_of(j, by)
        for stage in COUNTED:
            if _in(j.reached_at(stage), start, end):
                counts[group][stage] += 1
        for m in j.won():
            if _in(m.at, start, end) and (currency is None or m.currency == currency):
                revenue[group] += m.amount or Decimal(0)
    unit = minor_unit(currency or (next(iter(currencies)) if len(currencies) == 1 else None))
    credit = attributed.credits if attributed else {}
    total_revenue = sum(revenue.values(), Decimal(0))
    groups = sorted(set(cost) | set(counts) | set(credit))
    rows = [
        _row(by, g, cost[g], counts[g], revenue[g], credit.get(g), total_revenue, unit)
        for g in groups
    ]
    total_counts = {s: sum(counts[g][s] for g in groups) for s in COUNTED}
    total_credit = sum(credit.values(), Decimal(0)) if attributed else None
    rows.append(
        _row(
            by,
            "TOTAL",
            sum(cost.values(), Decimal(0)),
            total_counts,
            total_revenue,
            total_credit,
            total_revenue,
            unit,
        )
    )
    return rows


def _row(
    by: str,
    group: str,
    cost: Decimal,
    counts: dict[str, int],
    revenue: Decimal,
    attributed: Decimal | None,
    total_revenue: Decimal,
    unit: Decimal,
) -> dict[str, Any]:
    cost = cost.quantize(unit, ROUND_HALF_UP)
    row: dict[str, Any] = {by: group, "cost": cost}
    for stage in COUNTED:
        row[f"{stage}s"] = counts[stage]
    for stage in COUNTED:
        row[f"cost_per_{stage}"] = _div(cost, counts[stage], unit)
    row["revenue"] = _round(revenue, unit)
    row["revenue_per_customer"] = _div(revenue, counts["customer"], unit)
    row["attributed_revenue"] = _round(attributed, unit)
    row["roi_pct"] = (
        round(float((attributed - cost) / cost * 100), 1)
        if attributed is not None and cost
        else None
    )
    row["contribution_pct"] = (
        round(float(attributed / total_revenue * 100), 1)
        if attributed is not None and total_revenue
        else None
    )
    return row
