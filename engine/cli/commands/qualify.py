"""`leadengine report sla` and `leadengine whatif`: qualification and distribution commands."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.analytics import account_queries
from engine.analytics import queries as reports
from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, positive_int, window_args
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


def register(commands: Commands) -> None:
    report = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report.add_parser(
        "sla",
        help="SLA timers per owner and queue; leads breached or at risk",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="First-touch and decision timers of every routed lead (its latest routing "
        "round), in business hours as the rules' `sla` says, evaluated at T: with --as-of T "
        "from what the engine had recorded by T, with --occurred-by T from what had happened "
        "by T (as known now), else now from everything. --from/--to keep the leads routed in "
        "the window. CSV lists the leads needing attention.",
        epilog=WINDOW_HELP,
    )
    window_args(p, currency=False)
    p.add_argument(
        "--limit", type=positive_int, default=30, help="leads listed in the table (default 30)"
    )
    fmt(p)
    handles(p, report_sla)

    p = commands.add(
        "whatif",
        help="replay the whole history under other rules; print what would change",
        description="A pure fold over the log under the current rules and under --rules, "
        "writing nothing: MQL counts, stage counts and score distribution old vs new, and the "
        "leads that would move. With --since, the new rules decide only facts from then on. "
        "Routing is not simulated.",
    )
    p.add_argument("--rules", type=Path, required=True, help="the rules file to try")
    p.add_argument("--since", help="RFC 3339 moment the new rules take over (default: always)")
    p.add_argument(
        "--limit", type=positive_int, default=20, help="changed leads listed (default 20)"
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="fold the leads in N processes (default: one per CPU up to 4, one per 50,000 "
        "facts at least); the result is the same for any N",
    )
    fmt(p)
    handles(p, whatif)


def report_sla(args: argparse.Namespace) -> int:
    window = window_of(args)
    clock = "recorded" if window.as_of else "occurred" if window.occurred_by else None
    as_of = window.as_of or window.occurred_by or datetime.now(UTC)
    with open_runtime(create=False) as rt:
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
    with open_runtime(create=False) as rt:
        total = rt.app.recorder.max_notification_id() or 0
        bar = Progress("replay (events)", total or None)
        facts = list(facts_from_log(rt.app, progress=bar.update))
        profiles = account_queries.profiles(rt.db)  # the accounts the MQA counts are over
        bar.update(total)  # the whole log was read, facts or not
        bar.done()
    fold = Progress("replay (facts folded)", len(facts) or None)
    result = replay(
        facts,
        rt.rules,
        new_rules,
        since=since,
        progress=fold.update,
        workers=args.workers,
        accounts=profiles,
    )
    fold.done()
    if result.workers_note:
        worker = "worker" if result.workers == 1 else "workers"
        print(
            f"whatif: using {result.workers} {worker} ({result.workers_note}), "
            f"not the {args.workers} asked for",
            file=sys.stderr,
        )
    doc = result.summary(limit=args.limit)
    if args.format == "json":
        print(to_json(doc))
        return 0
    if args.format == "csv":
        print(render("csv", doc["changed"]), end="")
        return 0
    replayed = (
        f"{doc['facts_in_window']:,} facts of {doc['leads_in_window']:,} leads from "
        f"{doc['since']} on replayed under the new rules; {doc['facts']:,} facts of "
        f"{doc['leads']:,} leads read ({total:,} events in the log), the earlier ones only to "
        "rebuild each lead's state"
        if doc["since"]
        else f"{doc['facts']:,} facts of {doc['leads']:,} leads replayed ({total:,} events in "
        "the log)"
    )
    head = (
        f"What if {doc['rules_new']} had decided instead of {doc['rules_old']}"
        f"{' from ' + doc['since'] if doc['since'] else ''}: {replayed}, nothing written.\n"
        f"MQL decisions: {doc['mql_old']:,} -> {doc['mql_new']:,}; leads whose stage or MQL "
        f"would change: {doc['leads_changed']:,}"
    )
    if doc.get("mqa_old") is not None:
        head += (
            f"\nAccounts meeting the MQA rule at the end: {doc['mqa_old']:,} -> "
            f"{doc['mqa_new']:,} (gained: {', '.join(doc['mqa_gained']) or 'none'}; lost: "
            f"{', '.join(doc['mqa_lost']) or 'none'})"
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
