"""Attribution paths: each lead's touches up to the moment it first reached the conversion stage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.journeys import Dataset, Journey, Touchpoint
from engine.domain.currency import NO_CURRENCY
from engine.domain.errors import LeadEngineError
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
        return [t.key(by) for t in self.touches]


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
    worth = Decimal(0)
    for m in j.won():
        amount, cur = m.amount or Decimal(0), m.currency or NO_CURRENCY
        converted = exchange.deal(amount, cur, m.at)
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
        raise ReportError(f"unknown value {value!r}; expected one of {', '.join(VALUES)}")
    stage = conversion or cfg.conversion
    lookback = timedelta(days=cfg.lookback_days) if cfg.lookback_days else None
    converting: list[tuple[Journey, tuple[Touchpoint, ...], datetime]] = []
    not_converting: list[Path] = []
    for j in dataset.journeys:
        touches = _eligible(j, cfg)
        at = j.reached_at(stage)
        if at is None or (end is not None and at >= end):
            window = tuple(t for t in touches if _in(t.at, start, end))
            if window:
                not_converting.append(Path(j.key, window, None, Decimal(0)))
            continue
        if start is not None and at < start:
            continue
        path = tuple(
            t for t in touches if t.at <= at and (lookback is None or t.at >= at - lookback)
        )
        converting.append((j, path, at))
    if value == "revenue" and currency is None:
        currency = _one_currency(j for j, _, _ in converting)
    exchange = Exchange(currency or NO_CURRENCY, rates)
    left_out = LeftOut()
    paths = []
    for j, path, at in converting:
        worth = path_value(j, exchange, left_out) if value == "revenue" else Decimal(1)
        captured = j.first("lead.captured")
        opportunity = j.reached_at("opportunity")
        paths.append(
            Path(
                j.key,
                path,
                at,
                worth,
                lead_created_at=captured.at if captured else j.reached_at("lead"),
                opportunity_at=opportunity if opportunity and opportunity <= at else None,
                closes=stage == "customer",
            )
        )
    return Paths(paths, not_converting, stage, value, currency, left_out)
