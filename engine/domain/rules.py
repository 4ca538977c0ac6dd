"""Rules as data: the universal lead definition, versioned and validated.

A rules file says what fits the ideal customer profile, what each touch is worth, what takes
points away, how fast engagement fades, and when a lead is marketing-qualified. Loading a bad
file raises `RulesError` naming the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.domain.contract import EVENT_TYPES, UnknownFields
from engine.domain.errors import RulesError

Scalar = str | int | float | bool


#: Every attribution model by name, in report order (engine/analytics/attribution.py computes
#: them; the read model's per-window columns are declared from this list).
ATTRIBUTION_MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "position_based",
    "w_shaped",
    "full_path",
    "time_decay",
    "markov",
    "shapley",
)


class Condition(BaseModel):
    """One test on one attribute; every operator given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str = Field(min_length=1)
    equals: Scalar | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in")
    prefix: str | None = None
    suffix: tuple[str, ...] | None = None
    contains: str | None = None
    gte: float | None = Field(default=None, allow_inf_nan=False)
    lte: float | None = Field(default=None, allow_inf_nan=False)

    @cached_property
    def _lowered(
        self,
    ) -> tuple[str | None, frozenset[str] | None, str | None, tuple[str, ...] | None, str | None]:
        """The text operators lower-cased once: (equals, in, prefix, suffix, contains)."""
        return (
            None if self.equals is None else str(self.equals).lower(),
            None if self.in_ is None else frozenset(str(v).lower() for v in self.in_),
            None if self.prefix is None else self.prefix.lower(),
            None if self.suffix is None else tuple(s.lower() for s in self.suffix),
            None if self.contains is None else self.contains.lower(),
        )

    @model_validator(mode="after")
    def _has_operator(self) -> Condition:
        ops = (self.equals, self.in_, self.prefix, self.suffix, self.contains, self.gte, self.lte)
        if all(op is None for op in ops):
            raise ValueError(
                f"condition on '{self.field}' needs an operator: "
                "equals, in, prefix, suffix, contains, gte or lte"
            )
        if self.gte is not None and self.lte is not None and self.gte > self.lte:
            raise ValueError(
                f"condition on '{self.field}': gte {self.gte:g} is above lte {self.lte:g}, "
                "so it never holds"
            )
        return self

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        """Every operator given holds on the attribute (text compared lower-cased)."""
        value = attrs.get(self.field)
        if value is None:
            return False
        text = str(value).lower()
        equals, in_, prefix, suffix, contains = self._lowered
        if equals is not None and text != equals:
            return False
        if in_ is not None and text not in in_:
            return False
        if prefix is not None and not text.startswith(prefix):
            return False
        if suffix is not None and not text.endswith(suffix):
            return False
        if contains is not None and contains not in text:
            return False
        if self.gte is not None or self.lte is not None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                return False
            if self.gte is not None and not number >= self.gte:
                return False
            if self.lte is not None and not number <= self.lte:
                return False
        return True


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
        if event_type not in self.types:
            return False
        return not self.when or all(c.matches(attrs) for c in self.when)


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

    @cached_property
    def _by_type(self) -> dict[str, tuple[EngagementRule, ...]]:
        by_type: dict[str, list[EngagementRule]] = {}
        for rule in self.rules:
            for t in rule.types:
                by_type.setdefault(t, []).append(rule)
        return {t: tuple(rs) for t, rs in by_type.items()}

    def rules_for(self, event_type: str) -> tuple[EngagementRule, ...]:
        """The rules that may match a touch of `event_type`, in file order."""
        return self._by_type.get(event_type, ())

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


class ScoringModel(BaseModel):
    """One scoring model: fit, engagement, how they combine, and its MQL rule.

    `ref` ("name@version") is what every decision taken under the model records.
    """

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


class Persona(BaseModel):
    """A buying role (champion, buyer, decision-maker, ...): its own fit rules, 0-100."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    rules: tuple[FitRule, ...] = Field(min_length=1)


class Rep(BaseModel):
    """A sales rep in a queue: `weight` for weighted round-robin, `capacity` = most open leads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    weight: int = Field(default=1, ge=1, le=100)
    capacity: int | None = Field(default=None, ge=0)


Strategy = Literal["round_robin", "weighted_round_robin", "least_loaded"]


class Queue(BaseModel):
    """A routing queue: which leads it takes (`when`, on profile attributes and `persona`),
    and how it picks a rep among those available and under capacity."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    when: tuple[Condition, ...] = ()
    strategy: Strategy = "round_robin"
    reps: tuple[Rep, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_reps(self) -> Queue:
        ids = [r.id for r in self.reps]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"queue '{self.id}' lists rep(s) {dupes} more than once")
        return self

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return all(c.matches(attrs) for c in self.when)


class Routing(BaseModel):
    """Who gets a lead that reaches `on_stage` without an owner: the first matching queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    on_stage: Literal["mql", "sal", "sql"] = "mql"
    queues: tuple[Queue, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_queues(self) -> Routing:
        ids = [q.id for q in self.queues]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"queue id(s) {dupes} used more than once")
        return self


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str = "UTC"
    start_hour: int = Field(default=9, ge=0, le=23)
    end_hour: int = Field(default=17, ge=1, le=24)
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = (
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
    )

    @model_validator(mode="after")
    def _sane(self) -> BusinessHours:
        if self.end_hour <= self.start_hour:
            raise ValueError("end_hour must be after start_hour")
        if not self.days:
            raise ValueError("business_hours.days must name at least one day")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:
            raise ValueError(f"unknown timezone '{self.timezone}'") from None
        return self


class Sla(BaseModel):
    """Turnaround the sales team owes a routed lead, counted in business hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    first_touch_hours: float = Field(default=4, gt=0)
    decision_hours: float = Field(default=24, gt=0)
    at_risk_after: float = Field(
        default=0.75, gt=0, lt=1, description="Share of the allowance after which it is at risk."
    )
    first_touch_types: tuple[str, ...] = (
        "touch.call_logged",
        "touch.email_sent",
        "touch.meeting_booked",
        "touch.meeting_held",
    )
    owner_only: bool = Field(
        default=False, description="Count only touches whose `rep` is the lead's owner."
    )
    business_hours: BusinessHours = BusinessHours()

    @model_validator(mode="after")
    def _known_types(self) -> Sla:
        unknown = [t for t in self.first_touch_types if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"sla.first_touch_types names unknown event type(s) {unknown}")
        return self


class Privacy(BaseModel):
    """What happens to personal data that arrives for a lead after `forget`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    after_erasure: Literal["strip", "drop"] = Field(
        default="strip",
        description="strip: record the event without its personal fields; drop: do not record "
        "an event that carries personal data (counted as ignored).",
    )


class Contract(BaseModel):
    """How strictly the event contract reads what upstream sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    unknown_fields: UnknownFields = Field(
        default="keep",
        description="keep: unknown data fields and extension attributes are kept with the fact "
        "as personal data (sealed, gone after forget), counted, never read by rules; "
        "reject: an event with an unknown data field is dead-lettered, the field named.",
    )


class Attribution(BaseModel):
    """How touchpoints share the credit for a conversion (weights where vendors allow them).

    Milestone shares (first touch, lead creation, opportunity creation, close) go to the touch
    at that moment; the rest is spread evenly over the other touches of the path."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    conversion: Literal["mql", "sql", "opportunity", "customer"] = "customer"
    lookback_days: float | None = Field(
        default=None, gt=0, description="Only touches this close to the conversion count."
    )
    exclude_types: tuple[str, ...] = (
        "touch.email_sent",
        "touch.email_bounced",
        "touch.unsubscribed",
    )
    position_first: float = Field(default=0.4, ge=0, le=1)
    position_last: float = Field(default=0.4, ge=0, le=1)
    w_first: float = Field(default=0.3, ge=0, le=1)
    w_lead_creation: float = Field(default=0.3, ge=0, le=1)
    w_opportunity_creation: float = Field(default=0.3, ge=0, le=1)
    full_path_milestone: float = Field(
        default=0.225, ge=0, le=0.25, description="Share of each of the four milestones."
    )
    time_decay_half_life_days: float = Field(default=7.0, gt=0)
    shapley_exact_max_channels: int = Field(default=12, ge=1, le=16)
    shapley_samples: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _shares(self) -> Attribution:
        if self.position_first + self.position_last > 1 + 1e-9:
            raise ValueError("attribution: position_first + position_last must be at most 1")
        if self.w_first + self.w_lead_creation + self.w_opportunity_creation > 1 + 1e-9:
            raise ValueError("attribution: the three W-shaped shares must add up to at most 1")
        unknown = [t for t in self.exclude_types if t not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"attribution.exclude_types names unknown event type(s) {unknown}")
        return self


ISO_4217 = r"^[A-Z]{3}$"


class Rate(BaseModel):
    """1 `from` is worth `rate` `to` for deals and costs dated from `since` (UTC date) until
    the next rate of the same pair. Direct rates only: no inverse, no chain through a third."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field(alias="from", pattern=ISO_4217, description="ISO 4217 code converted")
    to: str = Field(pattern=ISO_4217, description="ISO 4217 code converted into")
    since: date
    rate: Decimal = Field(gt=0, max_digits=24, decimal_places=12, allow_inf_nan=False)


class Money(BaseModel):
    """The currency reports are in unless `--currency` says otherwise, and the dated rates
    that convert other currencies into it. An amount no rate covers is left out and counted."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reporting_currency: str = Field(default="USD", pattern=ISO_4217)
    rates: tuple[Rate, ...] = ()

    @model_validator(mode="after")
    def _sane_rates(self) -> Money:
        seen: set[tuple[str, str, date]] = set()
        for i, r in enumerate(self.rates):
            if r.from_ == r.to:
                raise ValueError(f"money.rates[{i}]: from and to are both {r.to}")
            key = (r.from_, r.to, r.since)
            if key in seen:
                raise ValueError(
                    f"money.rates[{i}]: a second {r.from_}->{r.to} rate since {r.since}"
                )
            seen.add(key)
        return self


MatchRule = Literal["explicit", "domain", "name"]
TieBreaker = Literal["tier", "most_leads", "latest_activity"]


class AccountMatching(BaseModel):
    """How a lead finds its account (docs/accounts.md): the rules in `order`, first that
    matches wins; several accounts on one rule are ranked by `tie_breakers`, then account id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    order: tuple[MatchRule, ...] = Field(default=("explicit", "domain", "name"), min_length=1)
    tie_breakers: tuple[TieBreaker, ...] = ("tier", "most_leads", "latest_activity")
    free_mail_domains: tuple[str, ...] = Field(
        default=(), description="E-mail domains that never match an account (lower case)."
    )
    legal_suffixes: tuple[str, ...] = Field(
        default=(), description="Words dropped from the end of a company name before comparing."
    )

    @model_validator(mode="after")
    def _no_repeats(self) -> AccountMatching:
        for name, items in (("order", self.order), ("tie_breakers", self.tie_breakers)):
            if len(set(items)) != len(items):
                raise ValueError(f"accounts.matching.{name} names an entry twice")
        return self

    @cached_property
    def free_mail(self) -> frozenset[str]:
        return frozenset(d.lower() for d in self.free_mail_domains)


class AccountEngagement(BaseModel):
    """Account engagement: each member lead's engagement score (primary model, decayed to the
    moment of scoring by its half-life) counts at most `per_lead_cap`; the sum is clamped 0-100."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    per_lead_cap: float = Field(default=40.0, ge=0, le=100)
    engaged_at_least: float = Field(
        default=10.0, ge=0, le=100, description="A member with this engagement is engaged."
    )


class BuyingRole(BaseModel):
    """A role in an account's buying group (champion, economic buyer, ...): a member lead
    takes the role of its best persona (`lead_state.best_persona`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    personas: tuple[str, ...] = Field(min_length=1)


class BuyingSegment(BaseModel):
    """The roles an account of this segment needs covered; the first segment whose `when`
    holds on the account's firmographics applies (no `when`: every account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    when: tuple[Condition, ...] = ()
    required: tuple[str, ...] = Field(min_length=1)

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return all(c.matches(attrs) for c in self.when)


class BuyingGroup(BaseModel):
    """Buying groups (docs/accounts.md#buying-groups): roles from personas, the roles each
    account segment needs covered by engaged leads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: tuple[BuyingRole, ...] = ()
    segments: tuple[BuyingSegment, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> BuyingGroup:
        for name, ids in (
            ("roles", [r.id for r in self.roles]),
            ("segments", [s.id for s in self.segments]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"accounts.buying_group.{name}: id(s) {dupes} used more than once")
        owner: dict[str, str] = {}
        for role in self.roles:
            for persona in role.personas:
                if persona in owner:
                    raise ValueError(
                        f"accounts.buying_group.roles: persona '{persona}' is in roles "
                        f"'{owner[persona]}' and '{role.id}' (a persona gives one role)"
                    )
                owner[persona] = role.id
        known = {r.id for r in self.roles}
        for segment in self.segments:
            unknown = [r for r in segment.required if r not in known]
            if unknown:
                raise ValueError(
                    f"accounts.buying_group.segments '{segment.id}' requires unknown role(s) "
                    f"{unknown} (roles: {sorted(known)})"
                )
        return self

    @cached_property
    def role_of_persona(self) -> dict[str, str]:
        return {p: r.id for r in self.roles for p in r.personas}


class MqaRule(BaseModel):
    """When an account is marketing-qualified (MQA): every threshold given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    total_at_least: float | None = Field(default=60.0, ge=0, le=100)
    fit_at_least: float | None = Field(default=None, ge=0, le=100)
    engaged_leads_at_least: int | None = Field(default=None, ge=1)
    buying_group_covered: bool = Field(
        default=False,
        description="Also require every role the account's segment needs covered by an "
        "engaged lead (accounts.buying_group).",
    )


#: what account conditions read (engine/domain/accounts/profile.py AccountProfile.attrs)
ACCOUNT_ATTRIBUTES = ("name", "industry", "employees", "annual_revenue", "country", "tier", "owner")


class ProvisionalAccounts(BaseModel):
    """Provisional accounts (docs/accounts.md#provisional-accounts): leads no rule matches,
    on a business e-mail domain, open an account for that domain once `min_leads` of them
    were seen; an `account.updated` claiming the domain later adopts it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: Literal["domain"] = Field(
        default="domain", alias="from", description="What opens one: the e-mail's domain."
    )
    min_leads: int = Field(
        default=1, ge=1, le=1000, description="Unmatched leads on the domain that open one."
    )


class AccountRules(BaseModel):
    """Accounts: matching, fit from firmographics, engagement rolled up, the MQA rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    matching: AccountMatching = AccountMatching()
    #: None: an unmatched lead stays without account
    provisional: ProvisionalAccounts | None = None
    fit: Fit = Fit()
    engagement: AccountEngagement = AccountEngagement()
    combine: Combine = Combine()
    mqa: MqaRule = MqaRule()
    buying_group: BuyingGroup = BuyingGroup()

    @model_validator(mode="after")
    def _known_fields(self) -> AccountRules:
        """Account conditions read firmographics only: a misspelt field would never hold."""
        where = [(f"fit rule '{r.id}'", r.when) for r in self.fit.rules]
        where += [(f"buying-group segment '{s.id}'", s.when) for s in self.buying_group.segments]
        for name, conditions in where:
            for c in conditions:
                if c.field not in ACCOUNT_ATTRIBUTES:
                    raise ValueError(
                        f"{name}: unknown account field '{c.field}'; expected one of "
                        + ", ".join(ACCOUNT_ATTRIBUTES)
                    )
        return self


DuplicateMatch = Literal["email", "phone"]
DuplicateAction = Literal["merge", "suggest"]


class DuplicateRule(BaseModel):
    """One duplicate rule (docs/identity.md#duplicates): two lead keys whose normalised `match`
    value is the same are one person (`merge`, recorded as an engine merge naming the rule)
    or may be (`suggest`, listed by `report duplicates`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    match: DuplicateMatch
    action: DuplicateAction = "suggest"


class Identity(BaseModel):
    """Identity rules: engine-detected duplicates."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    duplicates: tuple[DuplicateRule, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Identity:
        names = [r.name for r in self.duplicates]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"identity.duplicates name(s) {dupes} used more than once")
        matches = [r.match for r in self.duplicates]
        twice = sorted({m for m in matches if matches.count(m) > 1})
        if twice:
            raise ValueError(
                f"identity.duplicates: more than one rule matches on {twice} (one rule per value)"
            )
        return self


class Rules(ScoringModel):
    """A whole rule set: the primary scoring model (top level), more models side by side,
    personas, routing and SLAs. The primary model decides MQL."""

    models: tuple[ScoringModel, ...] = ()
    personas: tuple[Persona, ...] = ()
    routing: Routing | None = None
    sla: Sla | None = None
    attribution: Attribution = Attribution()
    money: Money = Money()
    privacy: Privacy = Privacy()
    contract: Contract = Contract()
    accounts: AccountRules = AccountRules()
    identity: Identity = Identity()

    @model_validator(mode="after")
    def _unique_names(self) -> Rules:
        names = [self.name, *(m.name for m in self.models)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"scoring model name(s) {dupes} used more than once")
        ids = [p.id for p in self.personas]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"persona id(s) {dupes} used more than once")
        unknown = sorted(set(self.accounts.buying_group.role_of_persona) - set(ids))
        if unknown:
            raise ValueError(
                f"accounts.buying_group.roles name unknown persona(s) {unknown} "
                f"(personas: {sorted(ids)})"
            )
        return self

    def all_models(self) -> tuple[ScoringModel, ...]:
        """The primary model first, then the others in file order."""
        return (self, *self.models)

    def model(self, name: str | None) -> ScoringModel:
        if name is None:
            return self
        for m in self.all_models():
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.all_models())
        raise RulesError(f"no scoring model named '{name}' (known: {known})")


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
        errors = exc.errors()
        locs = [tuple(p for p in e["loc"] if isinstance(p, (int, str))) for e in errors]
        for err, loc in zip(errors, locs, strict=True):
            if any(other[: len(loc)] == loc and other != loc for other in locs):
                continue  # a consequence of a deeper error (e.g. "too few items"): say the cause
            line = _line_of(text, loc)
            where = f"{source}:{line}" if line else source
            path = ".".join(str(p) for p in loc) or "(top)"
            msg = _INSTANCE_OF.sub("", err["msg"])  # not the model's class name
            lines.append(f"{where}: {path}: {msg}")
        raise RulesError("\n".join(lines)) from None


#: pydantic's "... or instance of SomeModel" names a class a rules file never shows
_INSTANCE_OF = re.compile(r" or instance of \w+")


def load_rules(path: Path | None = None) -> Rules:
    """Load a rules file, or the shipped default when `path` is None."""
    if path is None:
        text = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
        return parse_rules(text, source="default_rules.yaml")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: not a text file; expected rules in YAML (UTF-8)") from None
    return parse_rules(text, source=str(path))
