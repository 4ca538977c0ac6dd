"""Round credits so that they add up exactly to the total (largest remainder, deterministic)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_FLOOR, Context, Decimal

#: Raw credits are floats summed in path order: their last bits depend on that order. Read at
#: 12 significant digits they do not, so equal credits compare equal whatever the input order.
SIGNIFICANT = Context(prec=12)


def exact_split(raw: Mapping[str, float], total: Decimal, quantum: Decimal) -> dict[str, Decimal]:
    """Credits in units of `quantum` whose sum is `total` exactly, each as close to `raw` as
    rounding allows. `total` must be a multiple of `quantum`. The units left after flooring go
    to the largest remainders; equal remainders (to 12 significant digits) go to keys in
    ascending code-point order (`ads` before `email`), whatever order `raw` came in."""
    if not raw:
        return {}
    units = int((total / quantum).to_integral_value())
    keys = sorted(raw)
    weights = {k: SIGNIFICANT.create_decimal_from_float(raw[k]) for k in keys}
    whole = sum(weights.values(), Decimal(0)) or Decimal(1)
    # the weights' 12 digits and then every digit of `units`: a total beyond 12 significant
    # digits (10^12 cents) still gets each key the floor or ceiling of its exact share
    scale = Context(prec=SIGNIFICANT.prec + len(str(abs(units))))
    scaled = {k: scale.divide(scale.multiply(weights[k], units), whole) for k in keys}
    floors = {k: int(scaled[k].to_integral_value(ROUND_FLOOR)) for k in keys}
    left = units - sum(floors.values())
    by_remainder = sorted(keys, key=lambda k: (-(scaled[k] - floors[k]), k))
    # whole rounds first (only all-zero weights leave more than one unit per key), then one
    # unit each to the largest remainders; a negative `left` would take from the smallest
    rounds, extra = divmod(left, len(keys))
    for i, k in enumerate(by_remainder):
        floors[k] += rounds + (1 if i < extra else 0)
    return {k: Decimal(floors[k]) * quantum for k in keys}
