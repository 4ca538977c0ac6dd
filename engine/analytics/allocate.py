"""Round credits so that they add up exactly to the total (largest remainder, deterministic)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal


def exact_split(raw: Mapping[str, float], total: Decimal, quantum: Decimal) -> dict[str, Decimal]:
    """Credits in units of `quantum` whose sum is `total` exactly, each as close to `raw` as
    rounding allows. `total` must be a multiple of `quantum`; ties go to the smaller key."""
    if not raw:
        return {}
    units = int((total / quantum).to_integral_value())
    keys = sorted(raw)
    scale = float(units) / (sum(raw.values()) or 1.0)
    scaled = {k: raw[k] * scale for k in keys}
    floors = {k: math.floor(scaled[k]) for k in keys}
    left = units - sum(floors.values())
    by_remainder = sorted(keys, key=lambda k: (-(scaled[k] - floors[k]), k))
    step = 1 if left >= 0 else -1
    i = 0
    while left != 0:
        k = by_remainder[i % len(keys)] if step > 0 else by_remainder[-1 - i % len(keys)]
        floors[k] += step
        left -= step
        i += 1
    return {k: Decimal(floors[k]) * quantum for k in keys}
