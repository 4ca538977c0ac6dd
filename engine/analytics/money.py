"""Cost per funnel stage, revenue per customer, ROI and marketing revenue contribution.

Costs are prorated by day to the window (a monthly cost line half inside it counts half).
Leads, MQLs, SQLs and customers are counted by the lead's source (its first touch) and the
moment it first reached each stage; attributed revenue comes from the chosen model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.analytics.attribution import Credits
from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.funnel import source_of, within
from engine.analytics.journeys import Cost, Dataset
from engine.analytics.paths import ReportError
from engine.analytics.stats import half_up
from engine.domain.currency import NO_CURRENCY, minor_unit
from engine.domain.rules import Rate

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


def _currency_of(ds: Dataset) -> str | None:
    """The only currency of the costs and deals (None: neither); several is an error."""
    currencies = {c.currency for c in ds.costs} | {
        m.currency or NO_CURRENCY for j in ds.journeys for m in j.won()
    }
    if len(currencies) > 1:
        raise ReportError(
            f"costs and deals are in several currencies ({', '.join(sorted(currencies))}); "
            "choose one with --currency"
        )
    return next(iter(currencies), None)


def money(
    ds: Dataset,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    by: str = "channel",
    attributed: Credits | None = None,
    currency: str | None = None,
    rates: Iterable[Rate] = (),
    left_out: LeftOut | None = None,
) -> list[dict[str, Any]]:
    """One row per channel (or campaign) and a TOTAL row, in `currency` (None: the data's only
    one) and its minor unit. Costs (at their first day's rate) and deals (at their day's rate)
    in another currency are converted with `rates`, or left out and counted in `left_out`."""
    target = currency or _currency_of(ds)
    exchange = Exchange(target or NO_CURRENCY, rates)
    left = left_out if left_out is not None else LeftOut()
    cost = costs_by(ds.costs, start, end, by, exchange, left)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    revenue: dict[str, Decimal] = defaultdict(Decimal)
    for j in ds.journeys:
        group = source_of(j, by)
        for stage in COUNTED:
            if within(j.reached_at(stage), start, end):
                counts[group][stage] += 1
        for m in j.won():
            if not within(m.at, start, end):
                continue
            amount, cur = m.amount or Decimal(0), m.currency or NO_CURRENCY
            deal = exchange.deal(amount, cur, m.at)
            if deal is None:
                left.add("revenue", cur, amount)
            else:
                revenue[group] += deal
    return table(by, cost, counts, revenue, attributed, target)


def costs_by(
    costs: Iterable[Cost],
    start: datetime | None,
    end: datetime | None,
    by: str,
    exchange: Exchange,
    left: LeftOut,
) -> dict[str, Decimal]:
    """The costs prorated to the window, per channel (campaign), in the exchange's currency;
    a part no rate converts is counted in `left`."""
    cost: dict[str, Decimal] = defaultdict(Decimal)
    for c in costs:
        part = prorated(c, start, end)
        converted = exchange.convert(part, c.currency, c.period_start)
        if converted is None:
            if part:
                left.add("cost", c.currency, part)
            continue
        cost[getattr(c, by)] += converted
    return cost


def table(
    by: str,
    cost: dict[str, Decimal],
    counts: dict[str, dict[str, int]],
    revenue: dict[str, Decimal],
    attributed: Credits | None,
    currency: str | None,
) -> list[dict[str, Any]]:
    """The money rows and their TOTAL from the per-group sums (`money`, and the streamed KPIs
    in engine/analytics/kpistream.py, which gather the same sums lead by lead)."""
    cost = defaultdict(Decimal, cost)
    counts = defaultdict(lambda: dict.fromkeys(COUNTED, 0), counts)
    revenue = defaultdict(Decimal, revenue)
    unit = minor_unit(currency)
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
    shown = row["attributed_revenue"]
    total = total_revenue.quantize(unit, ROUND_HALF_UP)
    # on the amounts as shown, in decimal: 449 against a cost of 400 is 12.25% -> 12.3
    row["roi_pct"] = (
        half_up((shown - cost) / cost * 100, "0.1") if shown is not None and cost else None
    )
    row["contribution_pct"] = (
        half_up(shown / total * 100, "0.1") if shown is not None and total else None
    )
    return row
