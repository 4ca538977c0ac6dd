"""Round credits so that they add up exactly to the total (largest remainder, deterministic)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal

#: Raw credits are floats summed in path order: their last bits depend on that order. Read at
#: 12 significant digits they do not, so equal credits compare equal whatever the input order.
SIGNIFICANT = Context(prec=12)


def exact_split(raw: Mapping[str, float], total: Decimal, quantum: Decimal) -> dict[str, Decimal]:
    """Credits in units of `quantum` whose sum is `total` exactly, each as close to `raw` as
    rounding allows. `total` must be a multiple of `quantum`. The units left after flooring go
    to the largest remainders, computed exactly from the weights read at 12 significant digits;
    equal remainders go to keys in ascending code-point order (`ads` before `email`), whatever
    order `raw` came in."""
    if not raw:
        return {}
    units = int((total / quantum).to_integral_value())
    keys = sorted(raw)
    # each weight read at 12 significant digits, then every step in exact integers: a key's
    # share is weight * units / whole, its floor and remainder integer division, so remainders
    # that differ only past any fixed number of digits are still told apart
    weights = {k: SIGNIFICANT.create_decimal_from_float(raw[k]) for k in keys}
    exponent = min(_exponent(w) for w in weights.values())
    ints = {k: _scaled_int(weights[k], exponent) for k in keys}
    whole = sum(ints.values()) or 1
    floors: dict[str, int] = {}
    remainders: dict[str, int] = {}
    for k in keys:
        floors[k], remainders[k] = divmod(ints[k] * units, whole)
    left = units - sum(floors.values())
    # a larger remainder is a larger fraction remainder / whole (its sign follows whole's)
    sign = 1 if whole > 0 else -1
    by_remainder = sorted(keys, key=lambda k: (-sign * remainders[k], k))
    # whole rounds first (only all-zero weights leave more than one unit per key), then one
    # unit each to the largest remainders; a negative `left` would take from the smallest
    rounds, extra = divmod(left, len(keys))
    for i, k in enumerate(by_remainder):
        floors[k] += rounds + (1 if i < extra else 0)
    return {k: Decimal(floors[k]) * quantum for k in keys}


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"a credit must be a finite number, got {value}")
    return exponent


def _scaled_int(value: Decimal, exponent: int) -> int:
    """`value` * 10^-exponent as an exact integer (`exponent` at most the value's own)."""
    sign, digits, own = value.as_tuple()
    assert isinstance(own, int)
    n: int = int("".join(map(str, digits)) or "0") * 10 ** (own - exponent)
    return -n if sign else n
