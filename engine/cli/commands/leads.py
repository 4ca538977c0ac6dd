"""`leadengine lead show|history|explain`: one lead, replayed from its events."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from engine.aggregates.lead import Lead
from engine.analytics import account_queries
from engine.cli.args import CLOCKS_HELP, Commands, clock_args, fmt, handles, output_file
from engine.cli.commands.audit import export
from engine.cli.output import render, to_json
from engine.domain import asof
from engine.domain.accounts.replay import Clock, match_as_of
from engine.domain.errors import LeadEngineError, echoed
from engine.domain.facts import ERASED_KEY
from engine.domain.scoring import Score, persona_fits
from engine.domain.shown import Shown
from engine.runtime import Runtime, open_runtime
from engine.services.account_replay import lead_decisions
from engine.services.application import LeadRef
from engine.services.asof_read import lead_as_of
from engine.services.history import history_rows, lead_title, shown_key, summary
from engine.stitching.person import Person, person_sla

KEY_HELP = "the lead's key upstream (CloudEvent subject), or its lead id (as outputs show it)"


def register(commands: Commands) -> None:
    lead = commands.group("lead", help="one lead: show, history, explain", dest="lead_command")
    p = lead.add_parser("show", help="current stage, owner, score and profile of a lead")
    p.add_argument("key", help=KEY_HELP)
    clock_args(p)
    fmt(p)
    handles(p, show)
    p = lead.add_parser("history", help="every event in order with score and stage after each")
    p.add_argument("key", help=KEY_HELP)
    clock_args(p)
    fmt(p)
    handles(p, history)
    p = lead.add_parser(
        "export",
        help="one JSON document for auditors: every event, decision, rule version, chain hash",
    )
    p.add_argument("key", help=KEY_HELP)
    p.add_argument("-o", "--output", type=output_file, help="file to write (default stdout)")
    handles(p, export)
    p = lead.add_parser(
        "explain",
        help="the score broken down by rule and event, with decay",
        description="Scored at T with --as-of T or --occurred-by T (see the clocks below), "
        "else at the lead's latest fact with everything recorded.",
        epilog=CLOCKS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("key", help=KEY_HELP)
    clock_args(p)
    p.add_argument("--model", help="scoring model name (default: the primary model)")
    fmt(p)
    handles(p, explain)


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


def _events_at(rt: Runtime, args: argparse.Namespace, ref: LeadRef) -> list[Any]:
    """The lead's stored events, cut by --as-of (recorded) or --occurred-by (happened)."""
    events: list[Any] = rt.app.lead_events(ref.id)
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
            f"lead {echoed(ref.key)} was not known at {moment.isoformat() if moment else '-'}"
        )
    return events


def show(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        ref = rt.app.resolve(args.key)
        lead: Any
        recorded = None if args.occurred_by else moment_arg(args.as_of)
        if recorded is not None:  # the lean fold (engine/services/asof_read.py)
            lead = lead_as_of(rt.app, ref.id, recorded)
        elif args.as_of or args.occurred_by:
            lead = asof.fold(_events_at(rt, args, ref), ref.key)
        else:
            lead = rt.app.get_lead(ref.id)
        # scored at T, decayed to then, as `lead explain` scores it; else at the latest fact
        moment = moment_arg(args.as_of) or moment_arg(args.occurred_by, "--occurred-by")
        result = lead.current_score(rt.rules, moment, explain=False)  # the totals: no lines
        person = None if args.occurred_by else rt.app.person(ref.id, as_of=moment_arg(args.as_of))
    # kept with an as-of lead (and its snapshots): the facts themselves stay packed
    shown: Shown = getattr(lead, "shown", None) or Shown.of(lead.facts)
    captured = shown.captured()
    contact = dict(captured.data) if captured else {}
    for name in contact.get(ERASED_KEY, ()):
        contact[name] = "(erased)"
    profile = shown.profile()
    reached = {k: v.isoformat() for k, v in lead.reached.items()}
    last_touches = [
        {"at": f.occurred_at.isoformat(), "type": f.type, "detail": summary(f.type, dict(f.data))}
        for f in shown.last_touches
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
        "name": contact.get("name"),
        "email": contact.get("email"),
        "profile": profile,
        "reached": reached,
        "facts": len(lead.facts),
        "touches": shown.touches,
        "anomalies": lead.anomalies,
        "last_touches": last_touches,
        "version": lead.version,
        "person": _person_doc(person),
    }
    if args.format == "json":
        print(to_json(doc))
        return 0
    flat: list[dict[str, Any]] = [
        {"field": "key", "value": lead.key},
        {"field": "lead id", "value": str(lead.id)},
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
            f"{result.engagement}) under {result.rules_ref}, scored at {result.as_of.isoformat()}",
        },
        {"field": "name", "value": doc["name"]},
        {"field": "email", "value": doc["email"]},
        *({"field": k, "value": v} for k, v in profile.items()),
        *({"field": f"reached {k}", "value": v} for k, v in reached.items()),
        {
            "field": "facts / touches / anomalies",
            "value": f"{len(lead.facts)} / {shown.touches} / {lead.anomalies}",
        },
        *_person_rows(doc["person"]),
    ]
    if args.format == "csv":
        print(render("csv", flat), end="")
        return 0
    title = f"Lead {lead_title(lead.id, lead.key)}"
    print(render("table", flat, columns=["field", "value"], title=title))
    print()
    print(render("table", last_touches, title="Last touches"))
    return 0


def _person_doc(person: Person | None) -> dict[str, Any] | None:
    """The person the lead is part of (docs/identity.md); None under --occurred-by."""
    if person is None:
        return None
    first = person.first_touch
    return {
        "id": str(person.person_id),
        "leads": [str(i) for i in person.lead_ids],
        "stage": person.stage,
        "furthest": person.furthest,
        "owner": person.owner,
        "owner_source": person.owner_source,
        "score": person.score.total,
        "touches": len(person.path),
        "first_touch": None
        if first is None
        else {
            "at": first.fact.occurred_at.isoformat(),
            "type": first.fact.type,
            "channel": first.fact.data.get("channel"),
            "campaign": first.fact.data.get("campaign"),
        },
    }


def _person_rows(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    if doc is None or len(doc["leads"]) < 2:
        return []
    first = doc["first_touch"]
    return [
        {"field": "person", "value": f"{doc['id']} ({len(doc['leads'])} leads)"},
        {"field": "person stage / owner", "value": f"{doc['stage']} / {doc['owner'] or '-'}"},
        {"field": "person score / touches", "value": f"{doc['score']} / {doc['touches']}"},
        {
            "field": "person first touch",
            "value": "-" if first is None else f"{first['at']} {first['type']} {first['channel']}",
        },
    ]


def history(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        ref = rt.app.resolve(args.key)
        events = _events_at(rt, args, ref)
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
    title = f"History of lead {lead_title(ref.id, shown_key(events, ref.key))}{cut}"
    print(render(args.format, rows, columns=columns, title=title))
    return 0


def explain(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        ref = rt.app.resolve(args.key)
        moment = moment_arg(args.as_of) or moment_arg(args.occurred_by, "--occurred-by")
        lead: Any
        if moment is not None and not args.occurred_by:  # recorded: the lean fold, snapshots
            lead = lead_as_of(rt.app, ref.id, moment)
        elif moment is not None:  # the lead as known on the chosen clock, scored at that moment
            lead = asof.fold(_events_at(rt, args, ref), ref.key, moment)
        else:
            lead = rt.app.get_lead(ref.id)
        rules = rt.rules
        model = rules.model(args.model)
        as_of = moment or lead.clock or lead.created_on
        result = lead.current_score(model, as_of)
        models = [
            {"model": m.ref, **_totals(lead.current_score(m, as_of, explain=False))}
            for m in rules.all_models()
        ]
        personas = persona_fits(lead.facts, rules.personas, as_of)
        sla = None
        if rules.sla is not None and lead.routings:  # timed by its person's facts, same clock
            members = rt.app.person_members(
                lead.id,
                moment if not args.occurred_by else None,
                moment if args.occurred_by else None,
            )
            # as one lead holding the union would be: as of the person's latest fact
            sla_at = moment or max(m.clock or m.created_on for m in [lead, *members])
            sla = person_sla(lead, members, rules.sla, sla_at)
        account = account_queries.lead_match(rt.db, lead.id)
        if moment is not None:
            clock: Clock = "occurred" if args.occurred_by else "recorded"
            account = _account_as_of(rt, lead.id, account, moment, clock)
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
        f"Score of {lead_title(lead.id, lead.key)} as of {as_of.isoformat()} under "
        f"{result.rules_ref}: "
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
        if "as_of" in account:
            title = f"Account {account['as_of']} " + (
                f"({account['rules_version']}, decided at {account['decided_at']})"
            )
        fields = ("account_key", "rule", "reason")
        print(render("table", [{k: account[k] for k in fields}], title=title))
    return 0


def _account_as_of(
    rt: Runtime, lead_id: UUID, now: dict[str, Any] | None, moment: datetime, clock: Clock
) -> dict[str, Any] | None:
    """The lead's account as of `moment`: its recorded match decisions folded to then
    (docs/accounts.md). A lead with none recorded but matched now was matched before decisions
    were recorded (migration 22) or the projector has not recorded it yet: its match now is
    shown, and said to be now. `as_of` (in JSON too) says which it is."""
    decisions = lead_decisions(rt.app, lead_id)
    on = "recorded by" if clock == "recorded" else "happened by"
    if not decisions and now is not None and now["account_key"] is not None:
        said = "as matched now: no match decision of this lead is recorded to replay"
        return {**now, "as_of": said}
    folded = match_as_of(decisions, moment, clock)
    said = f"as matched {on} {moment.isoformat()} ({folded.decisions} recorded decisions)"
    d = folded.joined
    if d is not None and d.baseline:
        said += (
            f"; its match then, on account {d.account_key}, was taken before match decisions "
            "were recorded (migration 22) and recorded only when it first changed: not "
            "recorded then, shown from its inputs' time"
        )
    if d is not None:
        return {
            "account_key": d.account_key,
            "rule": d.rule,
            "reason": d.reason,
            "candidates": list(d.candidates),
            "decided_at": d.decided_at,
            "rules_version": d.rules_version,
            "as_of": said,
        }
    if now is None and not decisions:
        return None  # the projector has not decided this lead: nothing to replay
    left = folded.left
    reason = (
        f"left account {left.account_key}: {left.reason}"
        if left is not None
        else "in no account: no match decision joined it to one by then (a match taken "
        "before decisions were recorded, migration 22, is known only for a lead re-decided "
        "since this leadengine recorded it)"
    )
    return {
        "account_key": None,
        "rule": None,
        "reason": reason,
        "candidates": list(left.candidates) if left else [],
        "decided_at": left.decided_at if left else None,
        "rules_version": left.rules_version if left else (now or {}).get("rules_version"),
        "as_of": said,
    }


def _totals(result: Score) -> dict[str, Any]:
    return {"fit": result.fit, "engagement": result.engagement, "total": result.total}
