"""Pure functions from domain events and aggregate state to read-model rows."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

from engine.aggregates.campaign import Campaign
from engine.aggregates.lead import Lead
from engine.facts import chronological, profile_of
from engine.lifecycle import RANK
from engine.rules import Rules, Sla
from engine.scoring import Score, best_of_profile
from engine.sla import add_business_hours, decided_at, first_touch_at

STAGE_COLUMNS = (
    "lead",
    "mql",
    "sal",
    "sql",
    "opportunity",
    "customer",
    "nurture",
    "recycled",
    "disqualified",
    "lost",
)
#: lead_state's column for when each of STAGE_COLUMNS was first reached (`lead`: captured_at)
STAGE_AT_COLUMNS = tuple("captured_at" if s == "lead" else f"{s}_at" for s in STAGE_COLUMNS)

LEAD_STATE_COLUMNS = (
    "lead_id",
    "lead_key",
    "stage",
    "furthest_rank",
    "owner",
    "fit",
    "engagement",
    "score",
    "rules_version",
    "source_channel",
    "source_campaign",
    "first_touch_at",
    "last_touch_at",
    "touch_count",
    "touch_counts",
    "anomalies",
    "mql_rounds",
    "company",
    "title",
    "country",
    "industry",
    "employees",
    "seniority",
    *STAGE_AT_COLUMNS,
    "won_amount",
    "won_currency",
    "last_event_at",
    "version",
    "owner_source",
    "queue",
    "best_persona",
    "persona_fit",
    "erased_at",
    "recorded_at",
)

SCORE_COLUMNS = (
    "lead_id",
    "model",
    "lead_key",
    "model_version",
    "fit",
    "engagement",
    "score",
    "as_of",
)

ROUTING_COLUMNS = (
    "lead_id",
    "version",
    "lead_key",
    "outcome",
    "owner",
    "queue",
    "strategy",
    "why",
    "trigger_event_id",
    "occurred_at",
    "recorded_at",
)

SLA_COLUMNS = (
    "lead_id",
    "lead_key",
    "round",
    "owner",
    "queue",
    "routed_at",
    "first_touch_due",
    "first_touch_at",
    "decision_due",
    "decided_at",
)

TOUCH_COLUMNS = (
    "lead_id",
    "event_id",
    "lead_key",
    "type",
    "channel",
    "campaign",
    "content",
    "url",
    "occurred_at",
    "recorded_at",
    "position",
    "rep",
    "source",
)

MILESTONE_COLUMNS = (
    "lead_id",
    "event_id",
    "lead_key",
    "type",
    "actor",
    "reason",
    "amount",
    "currency",
    "occurred_at",
    "recorded_at",
    "position",
    "source",
)
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

STAGE_HISTORY_COLUMNS = (
    "lead_id",
    "version",
    "lead_key",
    "from_stage",
    "to_stage",
    "reason",
    "trigger_event_id",
    "decision",
    "score",
    "occurred_at",
    "recorded_at",
    "retracted_at",
)

COST_COLUMNS = (
    "event_id",
    "campaign",
    "channel",
    "amount",
    "currency",
    "period_start",
    "period_end",
    "recorded_at",
    "source",
)


def lead_state_row(lead: Lead, rules: Rules, primary: Score | None = None) -> tuple[Any, ...]:
    """The `lead_state` row of a lead: its current opinions under `rules` (`primary`: its
    score under them, if the caller has it already)."""
    result = primary if primary is not None else lead.current_score(rules, explain=False)
    touches = [f for f in chronological(lead.facts) if f.is_touch]
    first = touches[0] if touches else None
    profile, origin = profile_of(lead.facts)
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
    persona = best_of_profile(profile, origin, rules.personas)  # the same facts: all of them
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


def sla_row(lead: Lead, sla: Sla) -> tuple[Any, ...] | None:
    """The latest routing round's timers' inputs; statuses are computed as of the report."""
    if not lead.routings:
        return None
    routed_at, owner, queue = lead.routings[-1]
    facts = list(lead.facts)
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
