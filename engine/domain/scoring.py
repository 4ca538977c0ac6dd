"""Scoring: a pure function of (facts, rules, as-of moment) that explains every point.

Fit is scored on the profile known at the moment; engagement on the touches that had happened
by then, each decayed by 2^(-age / half_life). Rule caps and type caps bound positive points
(granted newest touch first, so recent behaviour is what counts); negative points are never
capped. Both parts are clamped to 0-100 and combined with the rules' weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from engine.domain.facts import Fact, chronological, profile_of
from engine.domain.rules import EngagementRule, FitRule, Persona, ScoringModel

DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class Line:
    """One contribution: which rule, which event, raw points, decay factor, points granted."""

    part: Literal["fit", "engagement"]
    rule: str
    event_id: str | None
    event_type: str | None
    occurred_at: datetime | None
    raw_points: float
    decay: float
    points: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["occurred_at"] = self.occurred_at.isoformat() if self.occurred_at else None
        return d


@dataclass(frozen=True, slots=True)
class Score:
    rules_ref: str
    as_of: datetime
    fit: float
    engagement: float
    total: float
    lines: tuple[Line, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules_ref,
            "as_of": self.as_of.isoformat(),
            "fit": self.fit,
            "engagement": self.engagement,
            "total": self.total,
            "lines": [line.as_dict() for line in self.lines],
        }


def clamp(value: float) -> float:
    return min(100.0, max(0.0, value))


def _fit_lines(facts: Sequence[Fact], rules: ScoringModel, as_of: datetime) -> list[Line]:
    attrs, origin = profile_of(facts, as_of)
    return rule_lines(rules.fit.rules, attrs, origin)


def fit_points(fit_rules: Sequence[FitRule], attrs: dict[str, Any]) -> float:
    """The sum of `rule_lines(...)` points, without the lines (the running score's fit)."""
    return sum(rule.points for rule in fit_rules if rule.matches(attrs))


def rule_lines(
    fit_rules: Sequence[FitRule], attrs: dict[str, Any], origin: dict[str, str]
) -> list[Line]:
    lines = []
    for rule in fit_rules:
        if rule.matches(attrs):
            field = rule.when[0].field
            note = ", ".join(f"{c.field}={attrs.get(c.field)!r}" for c in rule.when)
            lines.append(
                Line(
                    "fit",
                    rule.id,
                    origin.get(field),
                    None,
                    None,
                    rule.points,
                    1.0,
                    rule.points,
                    note,
                )
            )
    return lines


def _decay(rule: EngagementRule, rules: ScoringModel, fact: Fact, as_of: datetime) -> float:
    half_life = rules.engagement.half_life_days
    if not rule.decay or half_life is None:
        return 1.0
    age_days = max(0.0, (as_of - fact.occurred_at).total_seconds() / DAY_SECONDS)
    return float(0.5 ** (age_days / half_life))


def _engagement_lines(facts: Sequence[Fact], rules: ScoringModel, as_of: datetime) -> list[Line]:
    granted = _grants(facts, rules, as_of, explain=True)
    return [granted[k] for k in sorted(granted)]


def _engagement_points(facts: Sequence[Fact], rules: ScoringModel, as_of: datetime) -> float:
    """The sum of `_engagement_lines(...)` points, in the same order, without the lines."""
    granted = _grants(facts, rules, as_of, explain=False)
    return float(sum(granted[k] for k in sorted(granted)))


def _grants(
    facts: Sequence[Fact], rules: ScoringModel, as_of: datetime, *, explain: bool
) -> dict[tuple[int, str], Any]:
    """What each (touch index, rule id) was granted: its `Line` with `explain`, else its points."""
    touches = [f for f in chronological(facts, as_of) if f.is_touch]
    rule_room: dict[str, float] = {r.id: r.cap for r in rules.engagement.rules if r.cap is not None}
    type_room: dict[str, float] = dict(rules.engagement.type_caps)
    granted: dict[tuple[int, str], Any] = {}
    # Grant newest first so that caps keep recent behaviour and drop the oldest.
    for index in range(len(touches) - 1, -1, -1):
        fact = touches[index]
        for rule in rules.engagement.rules_for(fact.type):
            if not rule.matches(fact.type, fact.data):
                continue
            factor = _decay(rule, rules, fact, as_of)
            raw = rule.points * factor
            points, note = raw, ""
            if raw > 0:
                room = min(rule_room.get(rule.id, raw), type_room.get(fact.type, raw))
                if room < raw:
                    points = max(0.0, room)
                    if explain:
                        which = "rule" if rule_room.get(rule.id, raw) <= room else "type"
                        note = f"capped by {which} cap" + ("" if points else " (nothing left)")
                if rule.id in rule_room:
                    rule_room[rule.id] -= points
                if fact.type in type_room:
                    type_room[fact.type] -= points
            if not explain:
                granted[(index, rule.id)] = points
                continue
            granted[(index, rule.id)] = Line(
                "engagement",
                rule.id,
                fact.event_id,
                fact.type,
                fact.occurred_at,
                rule.points,
                round(factor, 6),
                points,
                note,
            )
    return granted


def score(
    facts: Sequence[Fact], rules: ScoringModel, as_of: datetime, *, explain: bool = True
) -> Score:
    """Score a lead's facts under `rules` as of `as_of`; same inputs, same score. Without
    `explain` the lines are left out (`lines` is empty): the same fit, engagement and total,
    for callers that keep only those (read-model rows, decisions, what-if)."""
    if not explain:
        attrs, _origin = profile_of(facts, as_of)
        fit = round(clamp(fit_points(rules.fit.rules, attrs)), 2)
        engagement = round(clamp(_engagement_points(facts, rules, as_of)), 2)
        total = round(
            fit * rules.combine.fit_weight + engagement * rules.combine.engagement_weight, 2
        )
        return Score(rules.ref, as_of, fit, engagement, total, ())
    fit_lines = _fit_lines(facts, rules, as_of)
    eng_lines = _engagement_lines(facts, rules, as_of)
    fit = round(clamp(sum(line.points for line in fit_lines)), 2)
    engagement = round(clamp(sum(line.points for line in eng_lines)), 2)
    total = round(fit * rules.combine.fit_weight + engagement * rules.combine.engagement_weight, 2)
    return Score(rules.ref, as_of, fit, engagement, total, (*fit_lines, *eng_lines))


@dataclass(frozen=True, slots=True)
class PersonaFit:
    persona: str
    fit: float
    lines: tuple[Line, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "persona": self.persona,
            "fit": self.fit,
            "lines": [line.as_dict() for line in self.lines],
        }


def persona_fits(
    facts: Sequence[Fact], personas: Sequence[Persona], as_of: datetime
) -> list[PersonaFit]:
    """Fit (0-100) per persona, best first; ties keep the rules file's order."""
    attrs, origin = profile_of(facts, as_of)
    return rank_personas(attrs, origin, personas)


def rank_personas(
    attrs: dict[str, Any], origin: dict[str, str], personas: Sequence[Persona]
) -> list[PersonaFit]:
    """`persona_fits` for a profile already computed (see `facts.profile_of`)."""
    fits = []
    for persona in personas:
        lines = rule_lines(persona.rules, attrs, origin)
        fits.append(
            PersonaFit(persona.id, round(clamp(sum(x.points for x in lines)), 2), tuple(lines))
        )
    order = {p.id: i for i, p in enumerate(personas)}
    return sorted(fits, key=lambda f: (-f.fit, order[f.persona]))


def best_persona(
    facts: Sequence[Fact], personas: Sequence[Persona], as_of: datetime
) -> PersonaFit | None:
    """The persona the lead fits best, or None when no persona fits at all (all zero)."""
    attrs, origin = profile_of(facts, as_of)
    return best_of_profile(attrs, origin, personas)


def best_of_profile(
    attrs: dict[str, Any], origin: dict[str, str], personas: Sequence[Persona]
) -> PersonaFit | None:
    fits = rank_personas(attrs, origin, personas)
    return fits[0] if fits and fits[0].fit > 0 else None
