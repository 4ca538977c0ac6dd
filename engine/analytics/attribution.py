"""Every attribution model over the same paths; credits add up exactly to the conversions
(or the revenue) they share."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.analytics import markov, shapley
from engine.analytics.allocate import exact_split
from engine.analytics.journeys import NO_TOUCH
from engine.analytics.models import RULE_BASED
from engine.analytics.paths import Path, Paths, ReportError
from engine.analytics.stats import half_up
from engine.domain.currency import minor_unit
from engine.domain.rules import ATTRIBUTION_MODELS, Attribution

MODELS = (*RULE_BASED, "markov", "shapley")
if MODELS != ATTRIBUTION_MODELS:  # pragma: no cover - a model added in one place only
    raise ImportError(f"attribution models {MODELS} differ from rules' {ATTRIBUTION_MODELS}")
BY = ("channel", "campaign", "content")
CONVERSION_QUANTUM = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Credits:
    model: str
    by: str
    value: str
    conversion: str
    total: Decimal
    conversions: int
    credits: dict[str, Decimal]
    quantum: Decimal = CONVERSION_QUANTUM
    currency: str | None = None  # of revenue credits
    left_out: list[dict[str, Any]] = field(default_factory=list)  # deals not in `currency`

    @property
    def zero(self) -> Decimal:
        """0 written like every credit (`0.00` for revenue), for a key this model left out."""
        return Decimal(0).quantize(self.quantum)

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for key, credit in sorted(self.credits.items(), key=lambda kv: (-kv[1], kv[0])):
            share = 100 * credit / self.total if self.total else Decimal(0)
            out.append({self.by: key, "credit": credit, "share_pct": half_up(share, "0.01")})
        return out


def _rule_based(model: str, paths: list[Path], by: str, cfg: Attribution) -> dict[str, float]:
    weights_of = RULE_BASED[model]
    raw: dict[str, float] = defaultdict(float)
    for path in paths:
        for key, w in zip(path.keys(by), weights_of(path, cfg), strict=True):
            raw[key] += w * float(path.value)
    return raw


def _markov(paths: Paths, touched: list[Path], by: str) -> dict[str, float]:
    chain = markov.Chain(
        [(p.keys(by), True) for p in touched] + [(p.keys(by), False) for p in paths.not_converting]
    )
    effects = chain.removal_effects()
    total_effect = sum(effects.values())
    value = float(sum((p.value for p in touched), Decimal(0)))
    if total_effect <= 0:
        return {}
    return {c: value * e / total_effect for c, e in effects.items() if e}


def _shapley(paths: Paths, touched: list[Path], by: str, cfg: Attribution) -> dict[str, float]:
    converting = Counter(frozenset(p.keys(by)) for p in touched)
    everyone = converting + Counter(frozenset(p.keys(by)) for p in paths.not_converting)
    v = shapley.conversion_rates(converting, everyone)
    cache: dict[frozenset[str], dict[str, float]] = {}
    raw: dict[str, float] = defaultdict(float)
    for path in touched:
        coalition = frozenset(path.keys(by))
        if coalition not in cache:
            cache[coalition] = shapley.shares(
                coalition,
                v,
                exact_max=cfg.shapley_exact_max_channels,
                samples=cfg.shapley_samples,
            )
        for key, share in cache[coalition].items():
            raw[key] += share * float(path.value)
    return raw


def attribute(paths: Paths, model: str, by: str, cfg: Attribution) -> Credits:
    """Credit per `by` value under `model`. Conversions without any touch on their path go to
    "(no touchpoint)", so nothing is lost and the credits always add up to the total."""
    if model not in MODELS:
        raise ReportError(
            f"unknown attribution model {model!r}; expected one of {', '.join(MODELS)}"
        )
    if by not in BY:
        raise ReportError(f"cannot attribute by {by!r}; expected one of {', '.join(BY)}")
    touched = [p for p in paths.converting if p.touches]
    untouched = sum((p.value for p in paths.converting if not p.touches), Decimal(0))
    if model == "markov":
        raw = _markov(paths, touched, by)
    elif model == "shapley":
        raw = _shapley(paths, touched, by, cfg)
    else:
        raw = _rule_based(model, touched, by, cfg)
    quantum = minor_unit(paths.currency) if paths.value == "revenue" else CONVERSION_QUANTUM
    touched_total = sum((p.value for p in touched), Decimal(0))
    credits = exact_split(raw, touched_total, quantum) if touched_total else {}
    if untouched:
        credits[NO_TOUCH] = untouched.quantize(quantum)
    return Credits(
        model=model,
        by=by,
        value=paths.value,
        conversion=paths.conversion,
        total=paths.total.quantize(quantum) if paths.value == "revenue" else paths.total,
        conversions=len(paths.converting),
        credits=credits,
        quantum=quantum,
        currency=paths.currency if paths.value == "revenue" else None,
        left_out=paths.left_out.rows(),
    )


def side_by_side(results: list[Credits]) -> list[dict[str, Any]]:
    """One row per channel (campaign, content), one column per model."""
    if not results:
        return []
    by = results[0].by
    keys = sorted({k for r in results for k in r.credits})
    weight = {k: sum((r.credits.get(k, Decimal(0)) for r in results), Decimal(0)) for k in keys}
    keys.sort(key=lambda k: (-weight[k], k))
    rows: list[dict[str, Any]] = [
        {by: k, **{r.model: r.credits.get(k, r.zero) for r in results}} for k in keys
    ]
    rows.append({by: "TOTAL", **{r.model: sum(r.credits.values(), r.zero) for r in results}})
    return rows
