"""Pure functions from domain events and aggregate state to read-model rows."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.aggregates.campaign import Campaign
from engine.aggregates.lead import Lead
from engine.domain.facts import Fact, chronological, profile_of
from engine.domain.lifecycle import RANK
from engine.domain.rules import Rules, Sla
from engine.domain.scoring import PersonaFit, Score, best_of_profile
from engine.domain.sla import add_business_hours, decided_at, first_touch_at
from engine.projections.registry import STAGE_COLUMNS, TABLES

#: Column lists of the tables, in the order the row functions below build their tuples: the
#: declaration is engine/projections/registry.py.
LEAD_STATE_COLUMNS = TABLES["lead_state"].names
SCORE_COLUMNS = TABLES["lead_scores"].names
ROUTING_COLUMNS = TABLES["lead_routing"].names
SLA_COLUMNS = TABLES["lead_sla"].names
TOUCH_COLUMNS = TABLES["lead_touchpoints"].names
MILESTONE_COLUMNS = TABLES["lead_milestones"].names
STAGE_HISTORY_COLUMNS = TABLES["lead_stage_history"].names
COST_COLUMNS = TABLES["campaign_costs"].names

#: Lead facts kept as milestones: everything but touches and profile updates.
MILESTONE_TYPES = frozenset(
    {
        "lead.captured",
        "owner.assigned",
        "sales.accepted",
        "sales.rejected",
        "sales.qualified",
        "sales.disqualified",
        "lead.nurture_enrolled",
        "opportunity.opened",
        "deal.won",
        "deal.lost",
    }
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A lead's profile over all its facts and the persona it fits best: what `lead_state` and
    `account_signals` both show, made once per lead and batch (`lead_profile`)."""

    attrs: dict[str, Any]
    origin: dict[str, str]
    persona: PersonaFit | None


def lead_profile(lead: Lead, rules: Rules) -> Profile:
    attrs, origin = profile_of(lead.facts)
    return Profile(attrs, origin, best_of_profile(attrs, origin, rules.personas))


def lead_state_row(
    lead: Lead, rules: Rules, primary: Score | None = None, known: Profile | None = None
) -> tuple[Any, ...]:
    """The `lead_state` row of a lead: its current opinions under `rules` (`primary`: its
    score under them, `known`: its profile, if the caller has them already)."""
    result = primary if primary is not None else lead.current_score(rules, explain=False)
    touches = [f for f in chronological(lead.facts) if f.is_touch]
    first = touches[0] if touches else None
    known = known or lead_profile(lead, rules)
    profile = known.attrs
    counts = Counter(f.type for f in touches)
    furthest = max((RANK[s] for s in (*lead.reached, lead.stage) if s in RANK), default=0)
    won = [f for f in lead.facts if f.type == "deal.won"]
    # one currency or none: a sum of two currencies is no amount (each deal: lead_milestones)
    won_currencies = {f.data.get("currency") for f in won}
    won_currency = won_currencies.pop() if len(won_currencies) == 1 else None
    won_amount = (
        sum((Decimal(str(f.data["amount"])) for f in won), Decimal(0)) if won_currency else None
    )
    employees = profile.get("employees")
    persona = known.persona  # the same facts: all of them
    return (
        lead.id,
        lead.key,
        lead.stage,
        furthest,
        lead.owner,
        result.fit,
        result.engagement,
        result.total,
        rules.ref,
        first.data.get("channel") if first else None,
        first.data.get("campaign") if first else None,
        first.occurred_at if first else None,
        touches[-1].occurred_at if touches else None,
        len(touches),
        json.dumps(dict(sorted(counts.items()))),
        lead.anomalies,
        lead.mql_rounds,
        profile.get("company"),
        profile.get("title"),
        profile.get("country"),
        profile.get("industry"),
        int(employees) if employees is not None else None,
        profile.get("seniority"),
        *(lead.reached.get(stage) for stage in STAGE_COLUMNS),
        won_amount,
        won_currency,
        lead.clock,
        lead.version,
        lead.owner_source,
        lead.queue,
        persona.persona if persona else None,
        persona.fit if persona else None,
        lead.erased_at,
        lead.modified_on,  # when the engine recorded the lead's latest event
    )


def score_rows(lead: Lead, rules: Rules, primary: Score | None = None) -> list[tuple[Any, ...]]:
    """One row per scoring model (the primary one included), as of the lead's latest fact
    (`primary`: the primary model's score, if the caller has it already)."""
    as_of = lead.clock or lead.created_on
    out = []
    for model in rules.all_models():
        if model is rules and primary is not None:
            result = primary  # the same facts, model and moment: computed once
        else:
            result = lead.current_score(model, as_of, explain=False)
        out.append(
            (
                lead.id,
                model.name,
                lead.key,
                model.version,
                result.fit,
                result.engagement,
                result.total,
                as_of,
            )
        )
    return out


def routing_row(lead: Lead, event: Lead.Routed | Lead.RoutingFailed) -> tuple[Any, ...]:
    if isinstance(event, Lead.Routed):
        outcome, owner, strategy, why = "routed", event.owner, event.strategy, event.why
    else:
        outcome, owner, strategy, why = "failed", None, None, event.reason
    return (
        event.originator_id,
        event.originator_version,
        lead.key,
        outcome,
        owner,
        event.queue,
        strategy,
        why,
        event.trigger_event_id,
        event.occurred_at,
        event.timestamp,
    )


def sla_row(lead: Lead, sla: Sla, facts: list[Fact] | None = None) -> tuple[Any, ...] | None:
    """The latest routing round's timers' inputs; statuses are computed as of the report.
    `facts`: what stops the timers, the person's (engine/stitching/person.py `sla_facts`);
    default the lead's own."""
    if not lead.routings:
        return None
    routed_at, owner, queue = lead.routings[-1]
    facts = list(lead.facts) if facts is None else facts
    bh = sla.business_hours
    return (
        lead.id,
        lead.key,
        len(lead.routings),
        owner,
        queue,
        routed_at,
        add_business_hours(routed_at, sla.first_touch_hours, bh),
        first_touch_at(facts, routed_at, owner, sla),
        add_business_hours(routed_at, sla.decision_hours, bh),
        decided_at(facts, routed_at),
    )


def touch_row(lead: Lead, event: Lead.FactRecorded, position: int) -> tuple[Any, ...]:
    d = event.data
    return (
        event.originator_id,
        event.event_id,
        lead.key,
        event.event_type,
        d.get("channel"),
        d.get("campaign"),
        d.get("content"),
        d.get("url"),
        event.occurred_at,
        event.timestamp,
        position,
        d.get("rep"),
        event.source,
    )


def milestone_row(lead: Lead, event: Lead.FactRecorded, position: int) -> tuple[Any, ...]:
    """A non-touch fact: `actor` is the rep or owner, `reason` the sales reason or program;
    the person's own details (email, name) never go here."""
    d = event.data
    amount = d.get("amount")
    return (
        event.originator_id,
        event.event_id,
        lead.key,
        event.event_type,
        d.get("rep") or d.get("owner"),
        d.get("reason") or d.get("program"),
        Decimal(str(amount)) if amount is not None else None,
        d.get("currency"),
        event.occurred_at,
        event.timestamp,
        position,
        event.source,
    )


def stage_row(lead: Lead, event: Lead.StageChanged | Lead.MarketingQualified) -> tuple[Any, ...]:
    if isinstance(event, Lead.MarketingQualified):
        reason = (
            f"score {event.score} (fit {event.fit}, engagement {event.engagement}) "
            f"met the MQL rule of {event.rules_version}"
        )
        return (
            event.originator_id,
            event.originator_version,
            lead.key,
            event.from_stage,
            "mql",
            reason,
            event.trigger_event_id,
            event.rules_version,
            event.score,
            event.occurred_at,
            event.timestamp,
            None,
        )
    return (
        event.originator_id,
        event.originator_version,
        lead.key,
        event.from_stage,
        event.to_stage,
        event.reason,
        event.trigger_event_id,
        None,
        None,
        event.occurred_at,
        event.timestamp,
        None,
    )


def cost_row(campaign: Campaign, event: Campaign.CostRecorded) -> tuple[Any, ...]:
    return (
        event.event_id,
        campaign.key,
        event.channel,
        event.amount,
        event.currency,
        event.period_start,
        event.period_end,
        event.timestamp,
        event.source or "",  # "" for costs recorded before the source was kept
    )
