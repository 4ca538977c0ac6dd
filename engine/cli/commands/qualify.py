"""`leadengine report sla` and `leadengine whatif`: qualification and distribution commands."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from engine.analytics import queries as reports
from engine.cli.commands.leads import moment_arg
from engine.cli.commands.reporting import window_of
from engine.cli.output import prose, render, to_json
from engine.cli.progress import Progress
from engine.domain.errors import LeadEngineError
from engine.domain.rules import load_rules
from engine.domain.whatif import facts_from_log, replay
from engine.runtime import open_runtime

CLOCK_TITLES = {
    "recorded": "what the engine had recorded by then",
    "occurred": "what had happened by then",
    None: "everything recorded so far",
}


def report_sla(args: argparse.Namespace) -> int:
    window = window_of(args)
    clock = "recorded" if window.as_of else "occurred" if window.occurred_by else None
    as_of = window.as_of or window.occurred_by or datetime.now(UTC)
    with open_runtime() as rt:
        if rt.rules.sla is None:
            raise LeadEngineError(f"rules {rt.rules.ref} define no `sla` section")
        doc = reports.sla(
            rt.db, rt.rules.sla, as_of, clock=clock, start=window.start, end=window.end
        )
    doc.update({k: v for k, v in window.describe().items() if k != "as_of"})
    if args.format == "json":
        print(to_json(doc))
        return 0
    if args.format == "csv":
        print(render("csv", doc["attention"]), end="")
        return 0
    short = [
        {
            "owner": r["owner"],
            "queue": r["queue"],
            "leads": r["leads"],
            "touch met": r["first_touch_met"],
            "touch at risk": r["first_touch_at_risk"],
            "touch breached": r["first_touch_breached"],
            "decision met": r["decision_met"],
            "decision at risk": r["decision_at_risk"],
            "decision breached": r["decision_breached"],
        }
        for r in doc["by_owner"]
    ]
    print(
        render(
            "table",
            short,
            title=f"SLA at {as_of.isoformat()} ({CLOCK_TITLES[clock]}): "
            f"{doc['routed_leads']} routed leads",
        )
    )
    print()
    shown = doc["attention"][: args.limit]
    print(
        render(
            "table",
            shown,
            title=f"Breached or at risk ({len(doc['attention'])}, first {len(shown)})",
        )
    )
    return 0


def whatif(args: argparse.Namespace) -> int:
    new_rules = load_rules(args.rules)
    since = moment_arg(args.since, "--since")
    with open_runtime() as rt:
        total = rt.app.recorder.max_notification_id() or 0
        bar = Progress("replay (events)", total or None)
        result = replay(
            facts_from_log(rt.app, progress=bar.update), rt.rules, new_rules, since=since
        )
        bar.update(total)  # the whole log was read, facts or not
        bar.done()
    doc = result.summary(limit=args.limit)
    if args.format == "json":
        print(to_json(doc))
        return 0
    if args.format == "csv":
        print(render("csv", doc["changed"]), end="")
        return 0
    head = (
        f"What if {doc['rules_new']} had decided instead of {doc['rules_old']}"
        f"{' from ' + doc['since'] if doc['since'] else ''}: {doc['facts']:,} facts of "
        f"{doc['leads']:,} leads replayed ({total:,} events in the log), nothing written.\n"
        f"MQL decisions: {doc['mql_old']:,} -> {doc['mql_new']:,}; leads whose stage or MQL "
        f"would change: {doc['leads_changed']:,}"
    )
    print(prose(head))
    print(prose(_reconcile(doc)))
    print()
    print(render("table", doc["stages"], title="Leads by current stage"))
    print()
    print(render("table", doc["scores"], title="Total score distribution (primary model)"))
    print()
    changed: list[dict[str, Any]] = doc["changed"]
    print(render("table", changed, title=f"Leads that would change (first {len(changed)})"))
    return 0


def _reconcile(doc: dict[str, Any]) -> str:
    """Why the MQL figure differs from `report funnel`'s (it counts implied MQLs too)."""
    implied = doc["reached_mql_old"] - doc["mql_old"]
    return (
        f"Reached MQL or a later stage (as `report funnel` counts): {doc['reached_mql_old']:,} "
        f"-> {doc['reached_mql_new']:,}. Under the current rules {implied:,} of them have no MQL "
        "decision: sales took them (accepted, qualified, ...) before one, so the funnel counts "
        "their MQL as implied by the skip, while the MQL figure above counts MQL decisions."
    )
