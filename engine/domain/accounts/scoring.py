"""Account score (fit from firmographics, engagement rolled up from its leads) and MQA.

Pure: the score is a function of the account's profile and its members' engagement at one
moment; every point is explained (`AccountScore.points`) and the MQA decision says which
thresholds held, under which rules version, on which trigger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from engine.domain.accounts.buying_group import RoleCoverage, coverage
from engine.domain.accounts.profile import AccountProfile
from engine.domain.rules import AccountRules


@dataclass(frozen=True, slots=True)
class Point:
    part: str  # fit or engagement
    rule: str  # the fit rule's id, or `lead:<id>` for a member's engagement
    points: float
    reason: str


@dataclass(frozen=True, slots=True)
class Member:
    """A lead of the account and its engagement score (0-100, decayed to the scoring moment)."""

    lead_id: str
    engagement: float
    persona: str | None = None  # its best persona: its buying-group role (buying_group.py)


@dataclass(frozen=True, slots=True)
class AccountScore:
    account_id: str
    fit: float
    engagement: float
    total: float
    members: int
    engaged: int  # members at or above `engagement.engaged_at_least`
    points: tuple[Point, ...]
    segment: str | None = None  # its buying-group segment
    roles_covered: tuple[str, ...] = ()  # required roles an engaged member holds
    roles_missing: tuple[str, ...] = ()  # required roles nobody engaged holds
    group_engagement: float = 0.0  # 0-100 (buying_group.py)
    roles: tuple[RoleCoverage, ...] = ()  # every role: holders, engaged, best engagement


@dataclass(frozen=True, slots=True)
class MqaDecision:
    account_id: str
    rules: str  # name@version
    trigger: str  # the event that made the account qualify
    at: datetime
    reason: str


def _clamp(value: float) -> float:
    return round(max(0.0, min(100.0, value)), 2)


def score(profile: AccountProfile, members: Iterable[Member], rules: AccountRules) -> AccountScore:
    """Fit: the account fit rules that hold (clamped 0-100). Engagement: each member's
    engagement up to `per_lead_cap`, summed in lead-id order, clamped 0-100."""
    points: list[Point] = []
    attrs = profile.attrs()
    for rule in rules.fit.rules:
        if rule.matches(attrs):
            conds = ", ".join(f"{c.field}={attrs.get(c.field)}" for c in rule.when)
            points.append(Point("fit", rule.id, rule.points, conds))
    cap = rules.engagement.per_lead_cap
    engaged = 0
    ordered = sorted(members, key=lambda m: m.lead_id)
    group = coverage(profile, ordered, rules)
    for m in ordered:
        if m.engagement >= rules.engagement.engaged_at_least:
            engaged += 1
        if m.engagement <= 0:
            continue
        counted = min(m.engagement, cap)
        capped = f" (capped at {cap:g})" if counted < m.engagement else ""
        reason = f"lead engagement {m.engagement:g}{capped}"
        points.append(Point("engagement", f"lead:{m.lead_id}", round(counted, 2), reason))
    fit = _clamp(sum(p.points for p in points if p.part == "fit"))
    engagement = _clamp(sum(p.points for p in points if p.part == "engagement"))
    w = rules.combine
    total = _clamp(fit * w.fit_weight + engagement * w.engagement_weight)
    return AccountScore(
        profile.account_id,
        fit,
        engagement,
        total,
        len(ordered),
        engaged,
        tuple(points),
        group.segment,
        group.covered,
        group.missing,
        group.engagement,
        group.roles,
    )


def unmet(result: AccountScore, rules: AccountRules) -> list[str]:
    """The MQA thresholds the score misses (none: the account qualifies)."""
    rule = rules.mqa
    missing = []
    if rule.total_at_least is not None and result.total < rule.total_at_least:
        missing.append(f"total {result.total:g} < {rule.total_at_least:g}")
    if rule.fit_at_least is not None and result.fit < rule.fit_at_least:
        missing.append(f"fit {result.fit:g} < {rule.fit_at_least:g}")
    if rule.engaged_leads_at_least is not None and result.engaged < rule.engaged_leads_at_least:
        missing.append(f"engaged leads {result.engaged} < {rule.engaged_leads_at_least}")
    if rule.buying_group_covered and result.roles_missing:
        missing.append(
            f"buying group ({result.segment}) misses role(s) {', '.join(result.roles_missing)}"
        )
    return missing


def decide_mqa(
    result: AccountScore, rules: AccountRules, *, ref: str, trigger: str, at: datetime
) -> MqaDecision | None:
    """The MQA decision when every threshold holds, else None (`unmet` says why not)."""
    if unmet(result, rules):
        return None
    reason = (
        f"total {result.total:g}, fit {result.fit:g}, {result.engaged} engaged of "
        f"{result.members} leads meet the MQA rule"
    )
    if rules.mqa.buying_group_covered:
        held = ", ".join(result.roles_covered) or "none required"
        reason += f"; buying group ({result.segment or 'no segment'}) covered: {held}"
    return MqaDecision(result.account_id, ref, trigger, at, reason)
