"""`leadengine lead show|history|explain`: one lead, replayed from its events."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from engine.aggregates.lead import Lead
from engine.contract import EVENT_TYPES, pii_fields
from engine.errors import LeadEngineError
from engine.facts import chronological, profile_of
from engine.output import render, to_json
from engine.runtime import open_runtime
from engine.scoring import score


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LeadEngineError(
            f"--as-of {text!r}: expected an RFC 3339 timestamp, e.g. 2026-03-03T09:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(event_type: str, data: dict[str, Any]) -> str:
    """The fact's payload without personal data, as `k=v` pairs."""
    hidden = pii_fields(event_type) if event_type in EVENT_TYPES else frozenset()
    shown = [f"{k}={v}" for k, v in data.items() if k not in hidden and k != "schema_version"]
    if hidden & data.keys():
        shown.append("(+PII: " + ", ".join(sorted(hidden & data.keys())) + ")")
    return " ".join(shown)


def show(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        lead = rt.app.get_lead(args.key)
        result = lead.current_score(rt.rules)
    captured = [f for f in chronological(lead.facts) if f.type == "lead.captured"]
    person = dict(captured[-1].data) if captured else {}
    touches = [f for f in chronological(lead.facts) if f.is_touch]
    profile, _ = profile_of(lead.facts)
    reached = {k: v.isoformat() for k, v in lead.reached.items()}
    last_touches = [
        {"at": f.occurred_at.isoformat(), "type": f.type, "detail": _summary(f.type, dict(f.data))}
        for f in touches[-5:]
    ]
    doc: dict[str, Any] = {
        "key": lead.key,
        "id": str(lead.id),
        "stage": lead.stage,
        "owner": lead.owner,
        "score": {
            "total": result.total,
            "fit": result.fit,
            "engagement": result.engagement,
            "rules": result.rules_ref,
            "as_of": result.as_of.isoformat(),
        },
        "name": person.get("name"),
        "email": person.get("email"),
        "profile": profile,
        "reached": reached,
        "facts": len(lead.facts),
        "touches": len(touches),
        "anomalies": lead.anomalies,
        "last_touches": last_touches,
        "version": lead.version,
    }
    if args.format == "json":
        print(to_json(doc))
        return 0
    flat: list[dict[str, Any]] = [
        {"field": "key", "value": lead.key},
        {"field": "stage", "value": lead.stage},
        {"field": "owner", "value": lead.owner or "-"},
        {
            "field": "score",
            "value": f"{result.total} (fit {result.fit}, engagement "
            f"{result.engagement}) under {result.rules_ref}",
        },
        {"field": "name", "value": doc["name"]},
        {"field": "email", "value": doc["email"]},
        *({"field": k, "value": v} for k, v in profile.items()),
        *({"field": f"reached {k}", "value": v} for k, v in reached.items()),
        {
            "field": "facts / touches / anomalies",
            "value": f"{len(lead.facts)} / {len(touches)} / {lead.anomalies}",
        },
    ]
    if args.format == "csv":
        print(render("csv", flat), end="")
        return 0
    print(render("table", flat, columns=["field", "value"], title=f"Lead {lead.key}"))
    print()
    print(render("table", last_touches, title="Last touches"))
    return 0


def history_rows(events: list[Any], rules: Any) -> list[dict[str, Any]]:
    """One row per stored event: what happened, why, and the score/stage/owner after it."""
    rows: list[dict[str, Any]] = []
    lead: Lead | None = None
    for event in events:
        lead = event.mutate(lead)
        assert lead is not None
        if isinstance(event, Lead.Started):
            what, detail, occurred = "created", f"key={event.key}", None
        elif isinstance(event, Lead.FactRecorded):
            what, occurred = event.event_type, event.occurred_at
            detail = f"[{event.event_id}] " + _summary(event.event_type, event.data)
        elif isinstance(event, Lead.MarketingQualified):
            what, occurred = "-> mql (decision)", event.occurred_at
            detail = (
                f"score {event.score} (fit {event.fit}, engagement {event.engagement}) "
                f"met MQL rule of {event.rules_version}; trigger {event.trigger_event_id}"
            )
        elif isinstance(event, Lead.StageChanged):
            what, occurred = f"-> {event.to_stage}", event.occurred_at
            detail = f"{event.reason}; trigger {event.trigger_event_id}"
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


def history(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        rows = history_rows(rt.app.lead_events(args.key), rt.rules)
    columns = [
        "version",
        "recorded_at",
        "occurred_at",
        "event",
        "detail",
        "score",
        "stage",
        "owner",
    ]
    print(render(args.format, rows, columns=columns, title=f"History of lead {args.key}"))
    return 0


def explain(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        lead = rt.app.get_lead(args.key)
        result = lead.current_score(rt.rules, _moment(args.as_of))
    if args.format == "json":
        print(to_json(result.as_dict()))
        return 0
    rows = [line.as_dict() for line in result.lines]
    columns = ["part", "rule", "event_id", "occurred_at", "raw_points", "decay", "points", "note"]
    title = (
        f"Score of {lead.key} as of {result.as_of.isoformat()} under {result.rules_ref}: "
        f"{result.total} = fit {result.fit} x w + engagement {result.engagement} x w"
    )
    print(render(args.format, rows, columns=columns, title=title))
    return 0
