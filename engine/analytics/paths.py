"""Attribution paths: each lead's touches up to the moment it first reached the conversion stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter

from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.journeys import _BY, UNKNOWN, Dataset, Journey, Touchpoint
from engine.domain.currency import NO_CURRENCY
from engine.domain.errors import LeadEngineError, echoed
from engine.domain.rules import Attribution, Rate

VALUES = ("conversions", "revenue")


class ReportError(LeadEngineError):
    """A report was asked for something the data or the options cannot give."""


@dataclass(frozen=True, slots=True)
class Path:
    """One lead's path. `converted_at` is None for a lead that did not convert in the window."""

    lead: str
    touches: tuple[Touchpoint, ...]
    converted_at: datetime | None
    value: Decimal
    lead_created_at: datetime | None = None
    opportunity_at: datetime | None = None
    closes: bool = False

    def keys(self, by: str) -> list[str]:
        """`Touchpoint.key(by)` of each touch (`by` checked once: a report asks a million)."""
        if by not in _BY:
            raise KeyError(by)
        get = attrgetter(by)
        return [get(t) or UNKNOWN for t in self.touches]


@dataclass(frozen=True, slots=True)
class Paths:
    converting: list[Path]
    not_converting: list[Path]
    conversion: str
    value: str
    currency: str | None
    left_out: LeftOut = field(default_factory=LeftOut)

    @property
    def total(self) -> Decimal:
        return sum((p.value for p in self.converting), Decimal(0))


def _eligible(j: Journey, cfg: Attribution) -> list[Touchpoint]:
    excluded = set(cfg.exclude_types)
    return [t for t in j.touches if t.type not in excluded]


def _in(at: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def _one_currency(journeys: Iterable[Journey]) -> str | None:
    """The only currency of these journeys' won deals (None: no deal); several is an error."""
    currencies = {m.currency or NO_CURRENCY for j in journeys for m in j.won()}
    if len(currencies) > 1:
        raise ReportError(
            f"revenue is in several currencies ({', '.join(sorted(currencies))}); "
            "choose one with --currency"
        )
    return next(iter(currencies), None)


def path_value(j: Journey, exchange: Exchange, left_out: LeftOut) -> Decimal:
    """The lead's won deals in the report currency; a deal no rate covers is left out (and
    counted in `left_out` under its own currency), never added as it is."""
    return deals_value(((m.amount, m.currency, m.at) for m in j.won()), exchange, left_out)


def deals_value(
    deals: Iterable[tuple[Decimal | None, str | None, datetime]],
    exchange: Exchange,
    left_out: LeftOut,
) -> Decimal:
    """`path_value` of won deals given as (amount, currency, when won)."""
    worth = Decimal(0)
    for amount_or_none, currency, at in deals:
        amount, cur = amount_or_none or Decimal(0), currency or NO_CURRENCY
        converted = exchange.deal(amount, cur, at)
        if converted is None:
            left_out.add("revenue", cur, amount)
        else:
            worth += converted
    return worth


def build_paths(
    dataset: Dataset,
    cfg: Attribution,
    *,
    conversion: str | None = None,
    value: str = "conversions",
    start: datetime | None = None,
    end: datetime | None = None,
    currency: str | None = None,
    rates: Iterable[Rate] = (),
) -> Paths:
    """Paths of the leads that first reached `conversion` in [start, end), and of those that
    had touches in the window but had not converted by its end (Markov and Shapley need them).

    With `value="revenue"` a path is worth the lead's won deals (as known at the dataset's
    as-of moment) in `currency` (None: the deals' only currency): deals in another currency
    are converted with `rates` or left out and counted in `Paths.left_out`."""
    if value not in VALUES:
        raise ReportError(f"unknown value {echoed(value)}; expected one of {', '.join(VALUES)}")
    stage = conversion or cfg.conversion
    lookback = timedelta(days=cfg.lookback_days) if cfg.lookback_days else None
    converting: list[tuple[Journey, tuple[Touchpoint, ...], datetime]] = []
    not_converting: list[Path] = []
    for j in dataset.journeys:
        cut = _cut(j, cfg, stage, start, end, lookback)
        if cut is None:
            continue
        path, at = cut
        if at is None:
            not_converting.append(Path(j.key, path, None, Decimal(0)))
        else:
            converting.append((j, path, at))
    if value == "revenue" and currency is None:
        currency = _one_currency(j for j, _, _ in converting)
    exchange = Exchange(currency or NO_CURRENCY, rates)
    left_out = LeftOut()
    paths = []
    for j, path, at in converting:
        worth = path_value(j, exchange, left_out) if value == "revenue" else Decimal(1)
        paths.append(_converting(j, path, at, worth, stage))
    return Paths(paths, not_converting, stage, value, currency, left_out)


def _cut(
    j: Journey,
    cfg: Attribution,
    stage: str,
    start: datetime | None,
    end: datetime | None,
    lookback: timedelta | None,
) -> tuple[tuple[Touchpoint, ...], datetime | None] | None:
    """The lead's path and when it converted in [start, end); not converted by `end`: its
    touches in the window and None; None when it is in neither (or has no such touch)."""
    touches = _eligible(j, cfg)
    at = j.reached_at(stage)
    if at is None or (end is not None and at >= end):
        window = tuple(t for t in touches if _in(t.at, start, end))
        return (window, None) if window else None
    if start is not None and at < start:
        return None
    path = tuple(t for t in touches if t.at <= at and (lookback is None or t.at >= at - lookback))
    return path, at


def _converting(
    j: Journey, path: tuple[Touchpoint, ...], at: datetime, worth: Decimal, stage: str
) -> Path:
    captured = j.first("lead.captured")
    opportunity = j.reached_at("opportunity")
    return Path(
        j.key,
        path,
        at,
        worth,
        lead_created_at=captured.at if captured else j.reached_at("lead"),
        opportunity_at=opportunity if opportunity and opportunity <= at else None,
        closes=stage == "customer",
    )


class PathStream:
    """`build_paths` one journey at a time, for journeys streamed in key order: `path(j)` is
    the lead's path as `build_paths` makes it (None: in neither list), `converted_at` None for
    one that did not convert. Revenue needs its currency up front (`report_currency` gives it):
    the deals' only currency would take every journey first."""

    def __init__(
        self,
        cfg: Attribution,
        *,
        conversion: str | None = None,
        value: str = "conversions",
        start: datetime | None = None,
        end: datetime | None = None,
        currency: str | None = None,
        rates: Iterable[Rate] = (),
    ) -> None:
        if value not in VALUES:
            raise ReportError(f"unknown value {echoed(value)}; expected one of {', '.join(VALUES)}")
        if value == "revenue" and currency is None:
            raise ReportError("streamed revenue paths need the report currency")
        self.cfg, self.value, self.start, self.end = cfg, value, start, end
        self.stage = conversion or cfg.conversion
        self.lookback = timedelta(days=cfg.lookback_days) if cfg.lookback_days else None
        self.currency = currency
        self.exchange = Exchange(currency or NO_CURRENCY, rates)
        self.left_out = LeftOut()

    def path(self, j: Journey) -> Path | None:
        cut = _cut(j, self.cfg, self.stage, self.start, self.end, self.lookback)
        if cut is None:
            return None
        path, at = cut
        if at is None:
            return Path(j.key, path, None, Decimal(0))
        revenue = self.value == "revenue"
        worth = path_value(j, self.exchange, self.left_out) if revenue else Decimal(1)
        return _converting(j, path, at, worth, self.stage)
