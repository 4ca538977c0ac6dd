"""A lead's history as people read it: one row per stored event, what happened and why, with
the score, stage and owner after it (`lead history`, `lead export`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from engine.aggregates.lead import Lead
from engine.domain.contract import EVENT_TYPES, pii_fields
from engine.domain.facts import ERASED_KEY
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules
from engine.domain.scoring import score


def summary(event_type: str, data: dict[str, Any]) -> str:
    """The fact's payload without personal data, as `k=v` pairs."""
    hidden = pii_fields(event_type) if event_type in EVENT_TYPES else frozenset()
    skip = {*hidden, "schema_version", ERASED_KEY}
    shown = [f"{k}={v}" for k, v in data.items() if k not in skip]
    if hidden & data.keys():
        shown.append("(+PII: " + ", ".join(sorted(hidden & data.keys())) + ")")
    if data.get(ERASED_KEY):
        shown.append("(PII erased: " + ", ".join(data[ERASED_KEY]) + ")")
    return " ".join(shown)


def kept_summary(extra: dict[str, Any] | None) -> str:
    """Names (never values: personal by default) of the unknown fields kept with a fact."""
    if not extra:
        return ""
    if extra.get(ERASED_KEY):
        return " (kept unknown fields erased)"
    names = [f"{part}.{name}" for part, fields in sorted(extra.items()) for name in fields]
    return " (+kept: " + ", ".join(names) + ")"


def history_rows(events: list[Any], rules: Rules) -> list[dict[str, Any]]:
    """One row per stored event: what happened, why, and the score/stage/owner after it."""
    rows: list[dict[str, Any]] = []
    lead: Lead | None = None
    for event in events:
        if lead is not None and event.originator_version != lead.version + 1:
            lead.version = event.originator_version - 1  # a cut (--occurred-by) skipped some
        lead = event.mutate(lead)
        assert lead is not None
        if isinstance(event, Lead.Started):
            what, detail, occurred = "created", f"key={event.key}", None
        elif isinstance(event, Lead.FactRecorded):
            what, occurred = event.event_type, event.occurred_at
            detail = f"[{event.event_id}] " + summary(event.event_type, event.data)
            detail += kept_summary(getattr(event, "extra", None))
        elif isinstance(event, Lead.MarketingQualified):
            what, occurred = "-> mql (decision)", event.occurred_at
            detail = (
                f"score {event.score} (fit {event.fit}, engagement {event.engagement}) "
                f"met MQL rule of {event.rules_version}; trigger {event.trigger_event_id}"
            )
        elif isinstance(event, Lead.StageChanged):
            what, occurred = f"-> {event.to_stage}", event.occurred_at
            detail = f"{event.reason}; trigger {event.trigger_event_id}"
        elif isinstance(event, Lead.StageRetracted):
            what, occurred = f"-/-> {event.to_stage} (retracted)", None
            detail = f"{event.reason}; version {event.version_retracted}"
        elif isinstance(event, Lead.Routed):
            what, occurred = f"routed to {event.owner} (decision)", event.occurred_at
            detail = f"{event.why}; trigger {event.trigger_event_id}"
        elif isinstance(event, Lead.RoutingFailed):
            what, occurred = "not routed (decision)", event.occurred_at
            detail = f"{event.reason}; trigger {event.trigger_event_id}"
        elif isinstance(event, Lead.Erased):
            what, occurred = "personal data erased", event.occurred_at
            detail = f"forget by {event.by}: {event.reason} (key shredded; history kept)"
        elif isinstance(event, Lead.SlaAlerted):
            what, occurred = f"SLA {event.timer} {event.status} (decision)", event.at
            detail = f"routed to {event.owner} at {event.routed_at.isoformat()}; due {event.due}"
        elif isinstance(event, Lead.Linked):
            what, occurred = f"{event.relation} (identity decision)", event.occurred_at
            detail = _link_detail(event)
        elif isinstance(event, Lead.DuplicateDismissed):
            what, occurred = "duplicate dismissed (decision)", event.occurred_at
            detail = (
                f"not one person with lead {event.other_id} ({event.rule}) by {event.by}: "
                f"{event.reason}"
            )
        elif isinstance(event, Lead.AnomalyFlagged):
            what, occurred = "anomaly", None
            detail = f"[{event.event_id}] {event.reason} (fact kept, stage unchanged)"
        else:
            what, detail, occurred = type(event).__name__, "", None
        current = score(lead.facts, rules, lead.clock) if lead.clock else None
        rows.append(
            {
                "version": event.originator_version,
                "recorded_at": event.timestamp,
                "occurred_at": occurred,
                "event": what,
                "detail": detail,
                "score": current.total if current else None,
                "stage": lead.stage,
                "owner": lead.owner,
            }
        )
    return rows


def _link_detail(event: Lead.Linked) -> str:
    """An identity decision as history shows it: the other lead by id (its key is personal
    and stays in the sealed fact), who and why; docs/identity.md."""
    with_ = "one person with" if event.relation != "unmerged" else "no longer one person with"
    who = f" by {event.by}" if event.by else ""
    why = f": {event.reason}" if event.reason else ""
    return f"[{event.event_id}] {with_} lead {event.other_id}{who}{why}"


def shown_key(events: list[Any], key: str) -> str:
    """The lead's key as the store shows it now: its pseudonym once forgotten."""
    started = next((e for e in events if isinstance(e, Lead.Started)), None)
    return str(started.key) if started is not None else key


def lead_title(lead_id: UUID, key: str) -> str:
    """How a command's header names a lead, the same whether it was asked for by key or by
    lead id: its key and its lead id; once forgotten (`key` is then its pseudonym), its lead
    id alone, said to be forgotten (the key is erased)."""
    if key == pseudonym(lead_id):
        return f"{lead_id} (forgotten: its key is erased)"
    return f"{key} (lead id {lead_id})"
