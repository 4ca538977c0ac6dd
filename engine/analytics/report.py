"""Whole reports as documents (dicts of row lists): what the CLI prints and the HTML page draws."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.analytics import followup, funnel, money
from engine.analytics.attribution import MODELS, Credits, Tally, attribute, side_by_side
from engine.analytics.exchange import LeftOut
from engine.analytics.journeys import Dataset, Journey
from engine.analytics.load import stream
from engine.analytics.paths import PathStream, ReportError, build_paths
from engine.domain.errors import echoed
from engine.domain.rules import Rules
from engine.postgres.db import Database

SECTIONS = (
    "funnel",
    "sources",
    "exits",
    "cycle",
    "flow",
    "followup",
    "dials",
    "reasons",
    "email",
    "clusters",
    "money",
)


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime | None = None
    end: datetime | None = None
    as_of: datetime | None = None  # recorded by (the engine's clock)
    occurred_by: datetime | None = None  # happened by (upstream `time`)

    def describe(self) -> dict[str, Any]:
        return {
            "from": self.start,
            "to": self.end,
            "as_of": self.as_of,
            "occurred_by": self.occurred_by,
        }


def report_currency(rules: Rules, currency: str | None) -> str:
    """`--currency`, else the rules' `money.reporting_currency`: a report is in one currency."""
    if currency is None:
        return rules.money.reporting_currency
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ReportError(f"--currency {currency!r}: expected an ISO 4217 code such as EUR")
    return currency


def models_of(name: str) -> tuple[str, ...]:
    if name == "all":
        return MODELS
    if name not in MODELS:
        raise ReportError(
            f"unknown attribution model {echoed(name)}; expected all or one of {', '.join(MODELS)}"
        )
    return (name,)


def attribution(
    ds: Dataset,
    rules: Rules,
    window: Window,
    *,
    model: str = "all",
    by: str = "channel",
    value: str = "conversions",
    conversion: str | None = None,
    currency: str | None = None,
) -> list[Credits]:
    cfg = rules.attribution
    paths = build_paths(ds, cfg, **_path_options(rules, window, conversion, value, currency))
    return [attribute(paths, m, by, cfg) for m in models_of(model)]


def _path_options(
    rules: Rules, window: Window, conversion: str | None, value: str, currency: str | None
) -> dict[str, Any]:
    """What a report's paths are built with (`build_paths`, `PathStream`), one way for both."""
    return {
        "conversion": conversion,
        "value": value,
        "start": window.start,
        "end": window.end,
        "currency": report_currency(rules, currency),
        "rates": rules.money.rates,
    }


def attribution_of(
    journeys: Iterable[Journey],
    rules: Rules,
    window: Window,
    *,
    model: str = "all",
    bys: Sequence[str] = ("channel",),
    value: str = "conversions",
    conversion: str | None = None,
    currency: str | None = None,
) -> dict[str, list[Credits]]:
    """`attribution` by each of `bys` over journeys taken one at a time in key order (as a
    Dataset lists them): the same credits, holding per-key sums, not the journeys."""
    cfg = rules.attribution
    models = models_of(model)
    builder = PathStream(cfg, **_path_options(rules, window, conversion, value, currency))
    tally = Tally(
        models, bys, cfg, conversion=builder.stage, value=value, currency=builder.currency
    )
    tally.left_out = builder.left_out
    for j in journeys:
        path = builder.path(j)
        if path is not None:
            tally.add(path)
    return {by: tally.results(by) for by in bys}


def attribution_streamed(
    db: Database,
    rules: Rules,
    window: Window,
    *,
    model: str = "all",
    bys: Sequence[str] = ("channel",),
    value: str = "conversions",
    conversion: str | None = None,
    currency: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, list[Credits]]:
    """`attribution` by each of `bys`, journeys streamed lead by lead from the read model:
    memory grows with the grouping keys and the converting leads (one number each), not with
    the touchpoints."""
    models_of(model)  # a wrong name fails before any row is read
    journeys = stream(db, window.as_of, occurred_by=window.occurred_by, progress=progress)
    return attribution_of(
        journeys, rules, window, model=model, bys=bys, value=value,
        conversion=conversion, currency=currency,
    )  # fmt: skip


def attribution_document(results: list[Credits], window: Window, rules: Rules) -> dict[str, Any]:
    first = results[0]
    return {
        **window.describe(),
        "rules": rules.ref,
        "conversion": first.conversion,
        "value": first.value,
        "by": first.by,
        "conversions": first.conversions,
        "total": first.total,
        "currency": first.currency,
        "left_out": first.left_out,
        "models": {r.model: r.rows() for r in results},
        "side_by_side": side_by_side(results),
    }


def kpis(
    ds: Dataset,
    rules: Rules,
    window: Window,
    *,
    period: str = "month",
    by: str = "channel",
    model: str = "linear",
    currency: str | None = None,
) -> dict[str, Any]:
    """Every KPI section; money uses `model` for attributed revenue (customers, by revenue)."""
    s, e = window.start, window.end
    cfg = rules.attribution
    first_touch_types = rules.sla.first_touch_types if rules.sla else None
    follow = (
        followup.sales_followup(ds, s, e, first_touch_types=first_touch_types)
        if first_touch_types
        else followup.sales_followup(ds, s, e)
    )
    currency = report_currency(rules, currency)
    revenue_paths = build_paths(
        ds,
        cfg,
        conversion="customer",
        value="revenue",
        start=s,
        end=e,
        currency=currency,
        rates=rules.money.rates,
    )
    (name,) = models_of(model)
    credits = attribute(revenue_paths, name, by, cfg)
    conversion_paths = build_paths(ds, cfg, start=s, end=e)
    left_out = LeftOut()
    money_rows = money.money(
        ds, s, e, by=by, attributed=credits, currency=currency,
        rates=rules.money.rates, left_out=left_out,
    )  # fmt: skip
    return {
        **window.describe(),
        "rules": rules.ref,
        "leads": len(ds.journeys),
        "funnel": funnel.stages(ds, s, e),
        "sources": funnel.by_source(ds, s, e, by=by),
        "exits": funnel.exits(ds, s, e),
        "cycle": [funnel.sales_cycle(ds, s, e)],
        "flow": funnel.lead_flow(ds, s, e, period=period, by=by),
        "followup": [follow],
        "dials": followup.dials(ds, s, e),
        "reasons": followup.reasons(ds, s, e),
        "email": followup.email(ds, s, e),
        "clusters": followup.clusters(conversion_paths),
        "money": money_rows,
        "money_model": name,
        "currency": currency,
        "money_left_out": [
            *left_out.rows(),
            *({**r, "what": "attributed_revenue"} for r in credits.left_out),
        ],
    }
