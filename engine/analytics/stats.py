"""Small statistics with the same definitions as PostgreSQL's, so views and reports agree."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks: PostgreSQL's `percentile_cont(q)`."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400.0


def hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600.0


def half_up(value: Decimal, places: str) -> float:
    """`value` rounded half away from zero to `places` (`"0.1"`) in decimal, as PostgreSQL's
    round(numeric) does: the one rounding rule of every printed percentage."""
    return float(value.quantize(Decimal(places), ROUND_HALF_UP))


def pct(part: float, whole: float) -> float | None:
    if not whole:
        return None
    return half_up(Decimal(100) * Decimal(part) / Decimal(whole), "0.1")


def r2(value: float | None) -> float | None:
    return None if value is None else half_up(Decimal(repr(value)), "0.01")
