"""Every attribution model over the same paths; credits add up exactly to the conversions
(or the revenue) they share."""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.analytics import markov, shapley
from engine.analytics.allocate import exact_split
from engine.analytics.exchange import LeftOut
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


def _check(models: Sequence[str], bys: Sequence[str]) -> None:
    for model in models:
        if model not in MODELS:
            raise ReportError(
                f"unknown attribution model {model!r}; expected one of {', '.join(MODELS)}"
            )
    for by in bys:
        if by not in BY:
            raise ReportError(f"cannot attribute by {by!r}; expected one of {', '.join(BY)}")


class Tally:
    """`attribute` for several models and groupings over paths fed one at a time (`add`), in
    the order `build_paths` lists them: the same credits, to the last digit, holding sums per
    grouping key, Markov's transition counts and Shapley's coalition counts (plus one coalition
    number and one value per converting path, to add Shapley's shares in path order), never
    the paths themselves."""

    def __init__(
        self,
        models: Sequence[str],
        bys: Sequence[str],
        cfg: Attribution,
        *,
        conversion: str,
        value: str,
        currency: str | None,
    ) -> None:
        _check(models, bys)
        self.models, self.bys, self.cfg = tuple(models), tuple(bys), cfg
        self.conversion, self.value, self.currency = conversion, value, currency
        self.rule_based = [m for m in self.models if m in RULE_BASED]
        self.raw: dict[tuple[str, str], defaultdict[str, float]] = {
            (m, by): defaultdict(float) for m in self.rule_based for by in self.bys
        }
        self.chains = {by: markov.Chain() for by in self.bys} if "markov" in models else {}
        self.shapley = "shapley" in models
        self.converting_sets: dict[str, Counter[frozenset[str]]] = {b: Counter() for b in bys}
        self.all_sets: dict[str, Counter[frozenset[str]]] = {b: Counter() for b in bys}
        self.set_ids: dict[str, dict[frozenset[str], int]] = {b: {} for b in bys}
        self.set_order: dict[str, array[int]] = {b: array("L") for b in bys}
        #: paths that did not convert, per grouping: how many of each key sequence (Markov
        #: and Shapley only count them; flushed into the chains and sets by `results`)
        self.unconverted: dict[str, Counter[tuple[str, ...]]] = {b: Counter() for b in bys}
        self.values = array("d")
        self.conversions = 0
        self.total = Decimal(0)
        self.touched_total = Decimal(0)
        self.untouched = Decimal(0)
        #: deals no rate covers (`PathStream.left_out`: the paths' values are made there)
        self.left_out = LeftOut()

    def add(self, path: Path) -> None:
        """One path: converting (`converted_at` set) or one that did not convert."""
        if path.converted_at is None:
            self.add_unconverted({by: tuple(path.keys(by)) for by in self.bys})
            return
        self.conversions += 1
        self.total += path.value
        if not path.touches:
            self.untouched += path.value
            return
        self.touched_total += path.value
        worth = float(path.value)
        weights = [RULE_BASED[m](path, self.cfg) for m in self.rule_based]
        if self.shapley:
            self.values.append(worth)
        for by in self.bys:
            keys = path.keys(by)
            for m, ws in zip(self.rule_based, weights, strict=True):
                raw = self.raw[(m, by)]
                for key, w in zip(keys, ws, strict=True):
                    raw[key] += w * worth
            if self.chains:
                self.chains[by].add(keys, True)
            if self.shapley:
                coalition = frozenset(keys)
                self.converting_sets[by][coalition] += 1
                self.all_sets[by][coalition] += 1
                ids = self.set_ids[by]
                self.set_order[by].append(ids.setdefault(coalition, len(ids)))

    def add_unconverted(self, keys: dict[str, tuple[str, ...]]) -> None:
        """A path that did not convert, as its key sequence per grouping (all Markov and
        Shapley read of it)."""
        if self.chains or self.shapley:
            for by in self.bys:
                self.unconverted[by][keys[by]] += 1

    def _flush(self, by: str) -> None:
        """The unconverted paths counted so far into the chain and the coalition counts."""
        for keys, n in self.unconverted[by].items():
            if self.chains:
                self.chains[by].add(keys, False, n)
            if self.shapley:
                self.all_sets[by][frozenset(keys)] += n
        self.unconverted[by].clear()

    def _markov(self, by: str) -> dict[str, float]:
        effects = self.chains[by].removal_effects()
        total_effect = sum(effects.values())
        value = float(self.touched_total)
        if total_effect <= 0:
            return {}
        return {c: value * e / total_effect for c, e in effects.items() if e}

    def _shapley(self, by: str) -> dict[str, float]:
        v = shapley.conversion_rates(self.converting_sets[by], self.all_sets[by])
        sets = list(self.set_ids[by])
        cache: dict[int, dict[str, float]] = {}
        raw: dict[str, float] = defaultdict(float)
        for worth, n in zip(self.values, self.set_order[by], strict=True):
            shares = cache.get(n)
            if shares is None:
                shares = cache[n] = shapley.shares(
                    sets[n],
                    v,
                    exact_max=self.cfg.shapley_exact_max_channels,
                    samples=self.cfg.shapley_samples,
                )
            for key, share in shares.items():
                raw[key] += share * worth
        return raw

    def results(self, by: str) -> list[Credits]:
        """Every model's credits by `by`, in the order the models were asked for."""
        revenue = self.value == "revenue"
        quantum = minor_unit(self.currency) if revenue else CONVERSION_QUANTUM
        self._flush(by)
        out = []
        for model in self.models:
            if model == "markov":
                raw = self._markov(by)
            elif model == "shapley":
                raw = self._shapley(by)
            else:
                raw = self.raw[(model, by)]
            credits = exact_split(raw, self.touched_total, quantum) if self.touched_total else {}
            if self.untouched:
                credits[NO_TOUCH] = self.untouched.quantize(quantum)
            out.append(
                Credits(
                    model=model,
                    by=by,
                    value=self.value,
                    conversion=self.conversion,
                    total=self.total.quantize(quantum) if revenue else self.total,
                    conversions=self.conversions,
                    credits=credits,
                    quantum=quantum,
                    currency=self.currency if revenue else None,
                    left_out=self.left_out.rows(),
                )
            )
        return out


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
