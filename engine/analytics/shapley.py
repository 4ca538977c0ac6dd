"""Shapley-value attribution over the channel sets of journeys.

The game: v(S) = conversion rate of the journeys whose set of channels is exactly S (0 when no
journey had S). A converting journey with channel set T shares its credit in proportion to the
Shapley values of the channels of T in that game restricted to T; the values always add up to
v(T) (efficiency), so the shares add up to 1. A channel that lowers the conversion rate gets a
negative share. Exact (all 2^k coalitions) up to `exact_max` channels on a path; beyond, the
average over `samples` random orderings, seeded by the set itself so every run gives the same.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Mapping
from math import factorial

Coalition = frozenset[str]


def conversion_rates(
    converting: Counter[Coalition], all_sets: Counter[Coalition]
) -> dict[Coalition, float]:
    return {s: converting[s] / n for s, n in all_sets.items() if n}


def _exact(members: list[str], v: Mapping[Coalition, float]) -> dict[str, float]:
    k = len(members)
    value = [0.0] * (1 << k)
    sizes = [0] * (1 << k)
    for mask in range(1, 1 << k):
        coalition = frozenset(members[i] for i in range(k) if mask >> i & 1)
        value[mask] = v.get(coalition, 0.0)
        sizes[mask] = sizes[mask & (mask - 1)] + 1
    weight = [factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)]
    phi = {}
    for i, member in enumerate(members):
        bit = 1 << i
        total = 0.0
        for mask in range(1 << k):
            if not mask & bit:
                total += weight[sizes[mask]] * (value[mask | bit] - value[mask])
        phi[member] = total
    return phi


def _sampled(members: list[str], v: Mapping[Coalition, float], samples: int) -> dict[str, float]:
    rng = random.Random(zlib.crc32("\x1f".join(members).encode()))
    phi = dict.fromkeys(members, 0.0)
    order = members[:]
    for _ in range(samples):
        rng.shuffle(order)
        before: frozenset[str] = frozenset()
        previous = 0.0
        for member in order:
            before = before | {member}
            now = v.get(before, 0.0)
            phi[member] += now - previous
            previous = now
    return {m: p / samples for m, p in phi.items()}


def shares(
    coalition: Coalition, v: Mapping[Coalition, float], *, exact_max: int = 12, samples: int = 2000
) -> dict[str, float]:
    """How a conversion with channel set `coalition` is shared by its channels (sums to 1)."""
    members = sorted(coalition)
    if len(members) == 1:
        return {members[0]: 1.0}
    phi = _exact(members, v) if len(members) <= exact_max else _sampled(members, v, samples)
    total = v.get(coalition, 0.0)
    if total <= 0:  # cannot happen for a converting set; equal split keeps the books exact
        return {m: 1.0 / len(members) for m in members}
    return {m: p / total for m, p in phi.items()}
