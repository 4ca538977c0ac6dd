"""Whole reports as documents (dicts of row lists): what the CLI prints and the HTML page draws."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.analytics import followup, funnel, kpiread, money, pathread
from engine.analytics.accounts import stream_by_account
from engine.analytics.attribution import MODELS, Credits, Tally, attribute, side_by_side
from engine.analytics.exchange import LeftOut
from engine.analytics.journeys import Cost, Dataset, Journey
from engine.analytics.kpistream import KpiTally
from engine.analytics.load import load_costs, stream
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
    feed = AttributionFeed(
        rules, window, model=model, bys=bys, value=value, conversion=conversion,
        currency=currency,
    )  # fmt: skip
    for j in journeys:
        feed.add(j)
    return feed.results()


class AttributionFeed:
    """`attribution_of` one journey at a time (`add`), so that one pass over streamed journeys
    can feed it and the KPIs together (`report html`)."""

    def __init__(
        self,
        rules: Rules,
        window: Window,
        *,
        model: str = "all",
        bys: Sequence[str] = ("channel",),
        value: str = "conversions",
        conversion: str | None = None,
        currency: str | None = None,
    ) -> None:
        cfg = rules.attribution
        self.bys = tuple(bys)
        self.builder = PathStream(cfg, **_path_options(rules, window, conversion, value, currency))
        self.tally = Tally(
            models_of(model), bys, cfg, conversion=self.builder.stage, value=value,
            currency=self.builder.currency,
        )  # fmt: skip
        self.tally.left_out = self.builder.left_out

    def add(self, j: Journey) -> None:
        path = self.builder.path(j)
        if path is not None:
            self.tally.add(path)

    def results(self) -> dict[str, list[Credits]]:
        return {by: self.tally.results(by) for by in self.bys}


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
    """`attribution` by each of `bys`, paths read person by person from the read model
    (`pathread.feed`: one cursor, the paths' own rows): memory grows with the grouping keys,
    the converting leads (one number each) and the distinct key sequences of the paths that
    did not convert, not with the touchpoints."""
    # a wrong model name fails here, before any row is read
    feed = AttributionFeed(
        rules, window, model=model, bys=bys, value=value, conversion=conversion,
        currency=currency,
    )  # fmt: skip
    pathread.feed(
        db, feed.builder, feed.tally, window.as_of, occurred_by=window.occurred_by,
        progress=progress,
    )  # fmt: skip
    return feed.results()


@dataclass(frozen=True, slots=True)
class AccountCredits:
    results: list[Credits]
    accounts: int  # account journeys the credits are over
    left_out: int  # person journeys of no account


def attribution_by_account_streamed(
    db: Database,
    rules: Rules,
    window: Window,
    *,
    model: str = "all",
    by: str = "channel",
    value: str = "conversions",
    conversion: str | None = None,
    currency: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> AccountCredits:
    """`attribution` over `accounts.by_account`'s journeys, streamed account by account: the
    same credits, holding per-key sums and one account's journey at a time."""
    models_of(model)
    merged = stream_by_account(db, window.as_of, occurred_by=window.occurred_by, progress=progress)
    seen = 0

    def counted() -> Iterator[Journey]:
        nonlocal seen
        for j in merged.journeys:
            seen += 1
            yield j

    results = attribution_of(
        counted(), rules, window, model=model, bys=(by,), value=value,
        conversion=conversion, currency=currency,
    )[by]  # fmt: skip
    return AccountCredits(results, seen, merged.left_out)


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


def kpis_of(
    journeys: Iterable[Journey],
    costs: Iterable[Cost],
    rules: Rules,
    window: Window,
    *,
    period: str = "month",
    by: str = "channel",
    model: str = "linear",
    currency: str | None = None,
    also: Callable[[Journey], None] | None = None,
) -> dict[str, Any]:
    """`kpis` over journeys taken one at a time in key order (as a Dataset lists them) and the
    cost lines: the same document, holding per-group sums and one number per lead where a
    median needs it, not the journeys. `also` sees every journey too (one pass, two reports)."""
    (name,) = models_of(model)
    tally = KpiTally(
        rules, window.start, window.end, costs=costs, currency=report_currency(rules, currency),
        model=name, period=period, by=by,
    )  # fmt: skip
    for j in journeys:
        tally.add(j)
        if also is not None:
            also(j)
    return {**window.describe(), "rules": rules.ref, **tally.sections()}


def kpis_streamed(
    db: Database,
    rules: Rules,
    window: Window,
    *,
    period: str = "month",
    by: str = "channel",
    model: str = "linear",
    currency: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`kpis`, each person's columns streamed from the read model (`kpiread.feed`: one query,
    arrays per person); a wrong model or currency fails before any row is read."""
    (name,) = models_of(model)
    tally = KpiTally(
        rules, window.start, window.end,
        costs=load_costs(db, window.as_of, window.occurred_by),
        currency=report_currency(rules, currency), model=name, period=period, by=by,
    )  # fmt: skip
    kpiread.feed(db, tally, window.as_of, occurred_by=window.occurred_by, progress=progress)
    return {**window.describe(), "rules": rules.ref, **tally.sections()}


def funnel_streamed(
    db: Database, window: Window, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """`report funnel` with a window or a clock (`funnel.snapshot`), journeys streamed lead by
    lead from the read model: memory holds one journey and a count per stage."""
    tally = funnel.SnapshotTally(window.start, window.end)
    kpiread.feed_funnel(db, tally, window.as_of, occurred_by=window.occurred_by, progress=progress)
    return tally.document()


def _read_model_pass(
    of: Callable[..., dict[str, Any]],
    db: Database,
    rules: Rules,
    window: Window,
    progress: Callable[[int], None] | None,
    *,
    period: str,
    by: str,
    model: str,
    currency: str | None,
) -> dict[str, Any]:
    """`of` (`page_document_of`) over the window's costs and its journeys streamed
    from the read model; a wrong model or currency fails before any row is read."""
    models_of(model)
    report_currency(rules, currency)
    costs = load_costs(db, window.as_of, window.occurred_by)
    journeys = stream(db, window.as_of, occurred_by=window.occurred_by, progress=progress)
    return of(journeys, costs, rules, window, period=period, by=by, model=model, currency=currency)


def page_document_of(
    journeys: Iterable[Journey],
    costs: Iterable[Cost],
    rules: Rules,
    window: Window,
    *,
    period: str = "month",
    by: str = "channel",
    model: str = "linear",
    currency: str | None = None,
) -> dict[str, Any]:
    """What `report html` draws: `kpis` plus every attribution model's conversions by `by`
    (`attribution_document`), both from one pass over the journeys."""
    feed = AttributionFeed(rules, window, bys=(by,), currency=currency)
    doc = kpis_of(
        journeys, costs, rules, window, period=period, by=by, model=model, currency=currency,
        also=feed.add,
    )  # fmt: skip
    doc["attribution"] = attribution_document(feed.results()[by], window, rules)
    return doc


def page_document_streamed(
    db: Database,
    rules: Rules,
    window: Window,
    *,
    period: str = "month",
    by: str = "channel",
    model: str = "linear",
    currency: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """`page_document_of` over journeys streamed from the read model."""
    return _read_model_pass(
        page_document_of, db, rules, window, progress,
        period=period, by=by, model=model, currency=currency,
    )  # fmt: skip
