"""Rules as data: the universal lead definition, versioned and validated.

A rules file says what fits the ideal customer profile, what each touch is worth, what takes
points away, how fast engagement fades, and when a lead is marketing-qualified. Loading a bad
file raises `RulesError` naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.contract import EVENT_TYPES
from engine.errors import RulesError

Scalar = str | int | float | bool


class Condition(BaseModel):
    """One test on one attribute; every operator given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str = Field(min_length=1)
    equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    prefix: str | None = None
    suffix: tuple[str, ...] | None = None
    contains: str | None = None
    gte: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _has_operator(self) -> Condition:
        ops = (self.equals, self.in_, self.prefix, self.suffix, self.contains, self.gte, self.lte)
        if all(op is None for op in ops):
            raise ValueError(
                f"condition on '{self.field}' needs an operator: "
                "equals, in, prefix, suffix, contains, gte or lte"
            )
        return self

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        value = attrs.get(self.field)
        if value is None:
            return False
        text = str(value).lower()
        checks: list[bool] = []
        if self.equals is not None:
            checks.append(text == str(self.equals).lower())
        if self.in_ is not None:
            checks.append(text in {str(v).lower() for v in self.in_})
        if self.prefix is not None:
            checks.append(text.startswith(self.prefix.lower()))
        if self.suffix is not None:
            checks.append(any(text.endswith(s.lower()) for s in self.suffix))
        if self.contains is not None:
            checks.append(self.contains.lower() in text)
        if self.gte is not None or self.lte is not None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            checks.append(self.gte is None or number >= self.gte)
            checks.append(self.lte is None or number <= self.lte)
        return all(checks)


class FitRule(BaseModel):
    """Points for who the lead is; all conditions must hold (negative points allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    description: str | None = None
    when: tuple[Condition, ...] = Field(min_length=1)
    points: float

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return all(c.matches(attrs) for c in self.when)


class EngagementRule(BaseModel):
    """Points for what the lead did: each matching touch earns `points`, decayed, up to `cap`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    description: str | None = None
    types: tuple[str, ...] = Field(min_length=1)
    when: tuple[Condition, ...] = ()
    points: float
    cap: float | None = Field(default=None, ge=0, description="Most this rule may add in total.")
    decay: bool = True

    @model_validator(mode="after")
    def _known_types(self) -> EngagementRule:
        unknown = [t for t in self.types if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event type(s) {unknown} in rule '{self.id}'")
        return self

    def matches(self, event_type: str, attrs: Mapping[str, Any]) -> bool:
        return event_type in self.types and all(c.matches(attrs) for c in self.when)


class Fit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: tuple[FitRule, ...] = ()


class Engagement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    half_life_days: float | None = Field(
        default=30.0, gt=0, description="Points halve every this many days; null = no decay."
    )
    type_caps: dict[str, float] = Field(default_factory=dict)
    rules: tuple[EngagementRule, ...] = ()

    @model_validator(mode="after")
    def _known_cap_types(self) -> Engagement:
        unknown = [t for t in self.type_caps if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"type_caps names unknown event type(s) {unknown}")
        return self


class Combine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fit_weight: float = Field(default=0.5, ge=0)
    engagement_weight: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _sum_to_one(self) -> Combine:
        if abs(self.fit_weight + self.engagement_weight - 1.0) > 1e-9:
            raise ValueError("fit_weight + engagement_weight must be 1.0 (the total is 0-100)")
        return self


class MqlRule(BaseModel):
    """A lead becomes MQL when every threshold given is met."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    total_at_least: float | None = Field(default=60.0, ge=0, le=100)
    fit_at_least: float | None = Field(default=None, ge=0, le=100)
    engagement_at_least: float | None = Field(default=None, ge=0, le=100)
    require: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _some_threshold(self) -> MqlRule:
        if (self.total_at_least, self.fit_at_least, self.engagement_at_least) == (None,) * 3:
            raise ValueError("mql needs at least one threshold")
        return self

    def met(self, fit: float, engagement: float, total: float) -> bool:
        tests = [
            value >= threshold
            for threshold, value in (
                (self.total_at_least, total),
                (self.fit_at_least, fit),
                (self.engagement_at_least, engagement),
            )
            if threshold is not None
        ]
        return all(tests) if self.require == "all" else any(tests)


class Rules(BaseModel):
    """A whole rule set; `ref` ("name@version") is what decisions record."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    fit: Fit = Fit()
    engagement: Engagement = Engagement()
    combine: Combine = Combine()
    mql: MqlRule = MqlRule()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """Best-effort line number of a validation error's location in the YAML source."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == part]
            if not match:
                keys = [k for k, _ in node.value if k.value == part]
                return keys[0].start_mark.line + 1 if keys else line
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def parse_rules(text: str, *, source: str = "<rules>") -> Rules:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RulesError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: expected a mapping at the top level")
    try:
        return Rules.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if isinstance(p, (int, str)))
            line = _line_of(text, loc)
            where = f"{source}:{line}" if line else source
            path = ".".join(str(p) for p in loc) or "(top)"
            lines.append(f"{where}: {path}: {err['msg']}")
        raise RulesError("\n".join(lines)) from None


def load_rules(path: Path | None = None) -> Rules:
    """Load a rules file, or the shipped default when `path` is None."""
    if path is None:
        text = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
        return parse_rules(text, source="default_rules.yaml")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from None
    return parse_rules(text, source=str(path))
