"""`leadengine lead show|history|explain`: one lead, replayed from its events."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from engine import asof
from engine.aggregates.lead import Lead
from engine.commands.accounts import lead_match
from engine.contract import EVENT_TYPES, pii_fields
from engine.errors import LeadEngineError
from engine.facts import ERASED_KEY, chronological, profile_of
from engine.output import render, to_json
from engine.runtime import open_runtime
from engine.scoring import persona_fits, score
from engine.sla import sla_state


def moment_arg(text: str | None, option: str = "--as-of") -> datetime | None:
    """The moment an option names (UTC when no offset is given); one line naming it if bad."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LeadEngineError(
            f"{option} {text!r}: expected an RFC 3339 timestamp or a date, "
            "e.g. 2026-03-03T09:00:00Z or 2026-03-03"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summary(event_type: str, data: dict[str, Any]) -> str:
    """The fact's payload without personal data, as `k=v` pairs."""
    hidden = pii_fields(event_type) if event_type in EVENT_TYPES else frozenset()
    skip = {*hidden, "schema_version", ERASED_KEY}
    shown = [f"{k}={v}" for k, v in data.items() if k not in skip]
    if hidden & data.keys():
        shown.append("(+PII: " + ", ".join(sorted(hidden & data.keys())) + ")")
    if data.get(ERASED_KEY):
        shown.append("(PII erased: " + ", ".join(data[ERASED_KEY]) + ")")
    return " ".join(shown)


def _kept_summary(extra: dict[str, Any] | None) -> str:
    """Names (never values: personal by default) of the unknown fields kept with a fact."""
    if not extra:
        return ""
    if extra.get(ERASED_KEY):
        return " (kept unknown fields erased)"
    names = [f"{part}.{name}" for part, fields in sorted(extra.items()) for name in fields]
    return " (+kept: " + ", ".join(names) + ")"


def _events_at(rt: Any, args: argparse.Namespace) -> list[Any]:
    """The lead's stored events, cut by --as-of (recorded) or --occurred-by (happened)."""
    events: list[Any] = rt.app.lead_events(args.key)
    as_of = moment_arg(getattr(args, "as_of", None))
    occurred = moment_arg(getattr(args, "occurred_by", None), "--occurred-by")
    if as_of and occurred:
        raise LeadEngineError("--as-of and --occurred-by are two different clocks: pick one")
    if as_of:
        events = asof.recorded_by(events, as_of)
    elif occurred:
        events = asof.occurred_by(events, occurred)
    if not any(isinstance(e, Lead.FactRecorded) for e in events):
        moment = as_of or occurred
        raise LeadEngineError(
            f"lead {args.key!r} was not known at {moment.isoformat() if moment else '-'}"
        )
    return events


def show(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        if args.as_of or args.occurred_by:
            lead = asof.fold(_events_at(rt, args), args.key)
        else:
            lead = rt.app.get_lead(args.key)
        result = lead.current_score(rt.rules)
    captured = [f for f in chronological(lead.facts) if f.type == "lead.captured"]
    person = dict(captured[-1].data) if captured else {}
    for name in person.get(ERASED_KEY, ()):
        person[name] = "(erased)"
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
        "owner_source": lead.owner_source,
        "queue": lead.queue,
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
        {
            "field": "owner",
            "value": f"{lead.owner} ({lead.owner_source}"
            f"{', queue ' + lead.queue if lead.queue else ''})"
            if lead.owner
            else "-",
        },
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
        if lead is not None and event.originator_version != lead.version + 1:
            lead.version = event.originator_version - 1  # a cut (--occurred-by) skipped some
        lead = event.mutate(lead)
        assert lead is not None
        if isinstance(event, Lead.Started):
            what, detail, occurred = "created", f"key={event.key}", None
        elif isinstance(event, Lead.FactRecorded):
            what, occurred = event.event_type, event.occurred_at
            detail = f"[{event.event_id}] " + _summary(event.event_type, event.data)
            detail += _kept_summary(getattr(event, "extra", None))
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


def shown_key(events: list[Any], key: str) -> str:
    """The lead's key as the store shows it now: its pseudonym once forgotten."""
    started = next((e for e in events if isinstance(e, Lead.Started)), None)
    return str(started.key) if started is not None else key


def history(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        events = _events_at(rt, args)
        rows = history_rows(events, rt.rules)
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
    cut = (
        f" as recorded by {args.as_of}"
        if args.as_of
        else f" as happened by {args.occurred_by}"
        if args.occurred_by
        else ""
    )
    title = f"History of lead {shown_key(events, args.key)}{cut}"
    print(render(args.format, rows, columns=columns, title=title))
    return 0


def explain(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        moment = moment_arg(args.as_of) or moment_arg(args.occurred_by, "--occurred-by")
        if moment is not None:  # the lead as known on the chosen clock, scored at that moment
            lead = asof.fold(_events_at(rt, args), args.key, moment)
        else:
            lead = rt.app.get_lead(args.key)
        rules = rt.rules
        model = rules.model(args.model)
        as_of = moment or lead.clock or lead.created_on
        result = lead.current_score(model, as_of)
        models = [
            {"model": m.ref, **_totals(lead.current_score(m, as_of))} for m in rules.all_models()
        ]
        personas = persona_fits(lead.facts, rules.personas, as_of)
        sla = (
            sla_state(list(lead.facts), lead.routings, rules.sla, as_of)
            if rules.sla is not None
            else None
        )
        account = lead_match(rt, lead.id)
    if args.format == "json":
        doc = result.as_dict()
        doc["models"] = models
        doc["personas"] = [p.as_dict() for p in personas]
        doc["best_persona"] = personas[0].persona if personas and personas[0].fit > 0 else None
        doc["sla"] = sla.as_dict() if sla else None
        doc["account"] = account
        print(to_json(doc))
        return 0
    rows = [line.as_dict() for line in result.lines]
    columns = ["part", "rule", "event_id", "occurred_at", "raw_points", "decay", "points", "note"]
    weights = model.combine
    title = (
        f"Score of {lead.key} as of {as_of.isoformat()} under {result.rules_ref}: "
        f"{result.total} = fit {result.fit} x {weights.fit_weight} + engagement "
        f"{result.engagement} x {weights.engagement_weight}"
    )
    print(render(args.format, rows, columns=columns, title=title))
    if args.format == "csv":
        return 0
    print()
    print(render("table", models, title="Every scoring model, same moment"))
    if personas:
        print()
        persona_rows = [
            {
                "persona": p.persona,
                "fit": p.fit,
                "because": "; ".join(f"{x.rule} {x.points:+g} ({x.note})" for x in p.lines),
            }
            for p in personas
        ]
        print(render("table", persona_rows, title="Personas (best first)"))
    if sla is not None:
        print()
        timers = [
            {"timer": t.name, "due": t.due, "done_at": t.done_at, "status": t.status}
            for t in (sla.first_touch, sla.decision)
        ]
        print(
            render(
                "table",
                timers,
                title=f"SLA of the routing to {sla.owner} ({sla.queue}) at {sla.routed_at}",
            )
        )
    if account is not None:  # as the read model decided it (docs/accounts.md)
        print()
        title = f"Account ({account['rules_version']}, decided at {account['decided_at']})"
        fields = ("account_key", "rule", "reason")
        print(render("table", [{k: account[k] for k in fields}], title=title))
    return 0


def _totals(result: Any) -> dict[str, Any]:
    return {"fit": result.fit, "engagement": result.engagement, "total": result.total}
