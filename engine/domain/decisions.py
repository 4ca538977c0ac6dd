"""The engine's decisions as outbound CloudEvents (the `lead-decisions` topic, docs/integration.md).

A pure mapping: one recorded `Lead` event, and the lead folded up to it, give at most one
CloudEvent. Its `id` is `<lead id>:<version>` (the stored event's aggregate id and version), so a
decision published twice (a relay restarted after a crash) carries the same id. Its `subject`
is the lead key as readable now: the lead's pseudonym once it is forgotten, whatever the event's
age. Nothing personal is in `data`: facts' personal fields are never read here, and `lead.erased`
says only when.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.aggregates.account import Account
from engine.aggregates.lead import Lead
from engine.domain import outbound
from engine.domain.rules import Rules

SOURCE = "leadengine"
SPECVERSION = "1.0"
#: How many of the score's lines `lead.qualified` carries (largest points first).
TOP_REASONS = 5

#: Outbound type of each decision event class (docs/integration.md; schemas/<type>.json).
TYPES: dict[type[Any], str] = {
    Lead.MarketingQualified: "lead.qualified",
    Lead.Routed: "lead.routed",
    Lead.RoutingFailed: "lead.routing_failed",
    Lead.StageChanged: "lead.stage_changed",
    Lead.StageRetracted: "lead.stage_retracted",
    Lead.AnomalyFlagged: "lead.anomaly_flagged",
    Lead.Erased: "lead.erased",
    Lead.SlaAlerted: "lead.sla_alerted",
    Lead.Linked: "lead.identity_decided",
}
#: Outbound type of each decision about an account (engine/domain/account_decisions.py).
ACCOUNT_TYPES: dict[type[Any], str] = {
    Account.Qualified: "account.qualified",
    Account.MemberDecided: "account.member_decided",
}
OUTBOUND_TYPES = tuple(sorted((*TYPES.values(), *ACCOUNT_TYPES.values())))
assert set(OUTBOUND_TYPES) == set(outbound.DATA)
assert set(ACCOUNT_TYPES.values()) == outbound.ACCOUNT_KINDS


def decision_id(lead_id: UUID | str, version: int) -> str:
    """The CloudEvent id of the decision stored at (`lead_id`, `version`): stable across runs."""
    return f"{lead_id}:{version}"


def encode(doc: dict[str, Any]) -> str:
    """A CloudEvent as published: compact JSON, fields in the order `to_cloudevent` gives."""
    return json.dumps(doc, separators=(",", ":"))


def _iso(value: datetime) -> str:
    return value.isoformat()


def to_cloudevent(
    event: Any,
    lead_id: UUID,
    key: str,
    rules: Rules,
    lead: Lead | None = None,
    reasons: list[dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """The CloudEvent for `event` (a decision on the lead `lead_id`, whose key reads `key`
    now), or None when `event` is not a decision (a fact, the lead's start). An MQL needs its
    `reasons` (`mql_reasons`), or `lead`, folded up to and including it, to compute them."""
    kind = TYPES.get(type(event))
    if kind is None:
        return None
    fields = {"lead_id": str(lead_id), "version": event.originator_version}
    data = outbound.DATA[kind](**fields, **_data(event, lead_id, rules, lead, reasons)).model_dump(
        mode="json"
    )
    return {
        "specversion": SPECVERSION,
        "id": decision_id(lead_id, event.originator_version),
        "source": SOURCE,
        "type": kind,
        "subject": key,
        "time": _iso(event.timestamp),
        "datacontenttype": "application/json",
        "data": data,
    }


def account_cloudevent(event: Any, account: UUID, key: str) -> dict[str, Any]:
    """The CloudEvent of a decision about the account `account` (key `key`)."""
    kind = ACCOUNT_TYPES[type(event)]
    fields: dict[str, Any] = {"account_id": str(account), "version": event.originator_version}
    if isinstance(event, Account.MemberDecided):
        fields.update(
            lead_id=event.lead_id,
            relation="joined" if event.joined else "left",
            rule=event.rule,
            reason=event.reason,
            candidates=list(event.candidates),
            rules_version=event.rules_version,
            occurred_at=_iso(event.decided_at) if event.decided_at else None,
            baseline=event.baseline,
        )
    else:
        assert isinstance(event, Account.Qualified)
        fields.update(
            score=event.score,
            fit=event.fit,
            engagement=event.engagement,
            members=event.members,
            engaged=event.engaged,
            rules_version=event.rules_version,
            trigger_event_id=event.trigger_event_id,
            occurred_at=_iso(event.occurred_at),
            reason=event.reason,
        )
    data = outbound.DATA[kind](**fields).model_dump(mode="json")
    return {
        "specversion": SPECVERSION,
        "id": decision_id(account, event.originator_version),
        "source": SOURCE,
        "type": kind,
        "subject": key,
        "time": _iso(event.timestamp),
        "datacontenttype": "application/json",
        "data": data,
    }


def _data(
    event: Any,
    lead_id: UUID,
    rules: Rules,
    lead: Lead | None,
    reasons: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    if isinstance(event, Lead.MarketingQualified):
        if reasons is None:
            if lead is None:
                raise ValueError("lead.qualified needs the lead, folded up to the decision")
            reasons = mql_reasons(event, lead, rules)
        return {
            "from_stage": event.from_stage,
            "score": event.score,
            "fit": event.fit,
            "engagement": event.engagement,
            "rules_version": event.rules_version,
            "trigger_event_id": event.trigger_event_id,
            "occurred_at": _iso(event.occurred_at),
            "reasons": reasons,
        }
    if isinstance(event, Lead.Routed):
        return {
            "owner": event.owner,
            "queue": event.queue,
            "strategy": event.strategy,
            "why": event.why,
            "trigger_event_id": event.trigger_event_id,
            "occurred_at": _iso(event.occurred_at),
        }
    if isinstance(event, Lead.RoutingFailed):
        return {
            "queue": event.queue,
            "reason": event.reason,
            "trigger_event_id": event.trigger_event_id,
            "occurred_at": _iso(event.occurred_at),
        }
    if isinstance(event, Lead.StageChanged):
        return {
            "from_stage": event.from_stage,
            "to_stage": event.to_stage,
            "reason": event.reason,
            "trigger_event_id": event.trigger_event_id,
            "occurred_at": _iso(event.occurred_at),
        }
    if isinstance(event, Lead.StageRetracted):
        return {
            "retracted_id": decision_id(lead_id, event.version_retracted),
            "to_stage": event.to_stage,
            "reason": event.reason,
            "trigger_event_id": event.trigger_event_id,
        }
    if isinstance(event, Lead.AnomalyFlagged):
        return {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "reason": event.reason,
        }
    if isinstance(event, Lead.SlaAlerted):
        return {
            "timer": event.timer,
            "status": event.status,
            "at": _iso(event.at),
            "due": _iso(event.due),
            "routed_at": _iso(event.routed_at),
            "owner": event.owner,
            "queue": event.queue,
        }
    if isinstance(event, Lead.Linked):
        return {
            "relation": event.relation,
            "other_id": str(event.other_id),
            "event_id": event.event_id,
            "source": event.source,
            "by": event.by,
            "occurred_at": _iso(event.occurred_at),
            "subject_wins": getattr(event, "subject_wins", False),
        }
    assert isinstance(event, Lead.Erased)
    return {"occurred_at": _iso(event.occurred_at)}


def mql_reasons(event: Lead.MarketingQualified, lead: Lead, rules: Rules) -> list[dict[str, Any]]:
    """The score's largest lines at the trigger's moment, as `lead explain` shows them; none
    when the rules that decided are no longer the ones loaded (re-scoring would not be honest)."""
    if rules.ref != event.rules_version:
        return []
    result = lead.current_score(rules, event.occurred_at)
    lines = sorted(result.lines, key=lambda line: -abs(line.points))[:TOP_REASONS]
    return [
        {
            "part": line.part,
            "rule": line.rule,
            "event_id": line.event_id,
            "event_type": line.event_type,
            "points": line.points,
            "note": line.note,
        }
        for line in lines
    ]
