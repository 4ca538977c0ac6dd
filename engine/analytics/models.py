"""Rule-based attribution models: how one path's credit is split among its touches.

Each function returns one weight per touch of the path, summing to 1 (an empty path: none).
Milestone models give their shares to the touch at each milestone (shares add up when one touch
is several milestones) and spread the rest evenly over the other touches; a milestone the path
lacks (no opportunity yet, a lead created before any touch) is left out and the remaining
shares are scaled back up to 1, as is the spread when no other touch is left to take it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from engine.analytics.paths import Path
from engine.domain.rules import Attribution

Weights = Callable[[Path, Attribution], list[float]]


def _last_at_or_before(path: Path, moment: datetime | None) -> int | None:
    if moment is None:
        return None
    index = None
    for i, t in enumerate(path.touches):
        if t.at <= moment:
            index = i
    return index


def milestone_weights(
    n: int, milestones: Sequence[tuple[int | None, float]], spread: float
) -> list[float]:
    if n == 0:
        return []
    weights = [0.0] * n
    taken = set()
    for index, share in milestones:
        if index is not None:
            weights[index] += share
            taken.add(index)
    others = [i for i in range(n) if i not in taken]
    for i in others:
        weights[i] += spread / len(others)
    total = sum(weights)
    if total <= 0:
        return [1.0 / n] * n
    return [w / total for w in weights]


def first_touch(path: Path, cfg: Attribution) -> list[float]:
    n = len(path.touches)
    return [1.0 if i == 0 else 0.0 for i in range(n)]


def last_touch(path: Path, cfg: Attribution) -> list[float]:
    n = len(path.touches)
    return [1.0 if i == n - 1 else 0.0 for i in range(n)]


def linear(path: Path, cfg: Attribution) -> list[float]:
    n = len(path.touches)
    return [1.0 / n] * n


def position_based(path: Path, cfg: Attribution) -> list[float]:
    """U-shaped: first and last touch (40/40 by default), the rest spread; one touch gets all,
    two touches split first:last."""
    n = len(path.touches)
    spread = 1.0 - cfg.position_first - cfg.position_last
    return milestone_weights(n, [(0, cfg.position_first), (n - 1, cfg.position_last)], spread)


def w_shaped(path: Path, cfg: Attribution) -> list[float]:
    """First touch, lead-creation touch, opportunity-creation touch (30/30/30), 10% spread."""
    n = len(path.touches)
    milestones = [
        (0, cfg.w_first),
        (_last_at_or_before(path, path.lead_created_at), cfg.w_lead_creation),
        (_last_at_or_before(path, path.opportunity_at), cfg.w_opportunity_creation),
    ]
    spread = 1.0 - cfg.w_first - cfg.w_lead_creation - cfg.w_opportunity_creation
    return milestone_weights(n, milestones, spread)


def full_path(path: Path, cfg: Attribution) -> list[float]:
    """W-shaped plus the close (the last touch before the deal was won): 22.5% each, 10% spread."""
    n = len(path.touches)
    m = cfg.full_path_milestone
    milestones = [
        (0, m),
        (_last_at_or_before(path, path.lead_created_at), m),
        (_last_at_or_before(path, path.opportunity_at), m),
        (n - 1 if path.closes else None, m),
    ]
    return milestone_weights(n, milestones, 1.0 - 4 * m)


def time_decay(path: Path, cfg: Attribution) -> list[float]:
    """Weight 2^(-t/h): t the time from the touch to the conversion, h the half life."""
    if not path.touches or path.converted_at is None:
        return []
    half_life = cfg.time_decay_half_life_days * 86400.0
    raw = [2.0 ** (-(path.converted_at - t.at).total_seconds() / half_life) for t in path.touches]
    total = sum(raw)
    return [w / total for w in raw]


RULE_BASED: dict[str, Weights] = {
    "first_touch": first_touch,
    "last_touch": last_touch,
    "linear": linear,
    "position_based": position_based,
    "w_shaped": w_shaped,
    "full_path": full_path,
    "time_decay": time_decay,
}
