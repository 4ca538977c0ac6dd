"""`leadengine report attribution | kpis | html`: touchpoint contribution and funnel KPIs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.analytics import queries, report, saved
from engine.analytics.report import SECTIONS, Window
from engine.cli.args import (
    WINDOW_HELP,
    Commands,
    Subparsers,
    fmt,
    handles,
    output_file,
    window_args,
)
from engine.cli.commands.leads import moment_arg
from engine.cli.html import page
from engine.cli.output import render, to_json
from engine.cli.progress import Progress
from engine.domain.errors import LeadEngineError
from engine.runtime import open_runtime


def register(commands: Commands) -> None:
    report = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report.add_parser(
        "funnel",
        help="stage counts, conversion rates, where leads are now",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Without options, every lead: stages reached and where each is now. With "
        "--from/--to, the leads created in the window (as `report kpis --section funnel`); "
        "with --as-of or --occurred-by, where they were at T on that clock.",
        epilog=WINDOW_HELP,
    )
    window_args(p, currency=False)
    fmt(p)
    handles(p, report_funnel)
    _report_parsers(report)


def window_of(args: argparse.Namespace) -> Window:
    """--from/--to (when it happened), --as-of (recorded by) or --occurred-by (happened by)."""
    window = Window(
        moment_arg(args.start, "--from"),
        moment_arg(args.end, "--to"),
        moment_arg(args.as_of, "--as-of"),
        moment_arg(args.occurred_by, "--occurred-by"),
    )
    if window.start and window.end and window.start >= window.end:
        raise LeadEngineError(f"--from {args.start} is not before --to {args.end}")
    if window.as_of and window.occurred_by:
        raise LeadEngineError("--as-of and --occurred-by are two different clocks: pick one")
    return window


def attribution(args: argparse.Namespace) -> int:
    window = window_of(args)
    if args.save and window.occurred_by:
        raise LeadEngineError(
            "--save stamps saved credits with --as-of (what the engine knew); "
            "it cannot be used with --occurred-by"
        )
    if args.save and args.by_account:
        raise LeadEngineError(
            "--save writes lead-level credits (attribution_credits); it cannot be used with "
            "--by-account"
        )
    left_out = None
    with open_runtime(create=False) as rt:
        kw: dict[str, Any] = {
            "model": args.model,
            "value": args.value,
            "conversion": args.conversion,
            "currency": args.currency,
        }
        # lead by lead (account by account): memory grows with the channels (campaigns)
        bar = Progress("reading touchpoints")
        if args.by_account:
            merged = report.attribution_by_account_streamed(
                rt.db, rt.rules, window, by=args.by, progress=bar.update, **kw
            )
            results, accounts, left_out = merged.results, merged.accounts, merged.left_out
        else:
            results = report.attribution_streamed(
                rt.db, rt.rules, window, bys=(args.by,), progress=bar.update, **kw
            )[args.by]
        bar.done(f"{results[0].conversions:,} conversions")
        if args.save:
            n = saved.save(rt.db, results, window, rt.rules.ref)
            print(f"saved {n} rows to {rt.db.schema}.attribution_credits", file=sys.stderr)
    doc = report.attribution_document(results, window, rt.rules)
    rows = results[0].rows() if len(results) == 1 else doc["side_by_side"]
    unit = f"revenue {doc['currency']}" if args.value == "revenue" else "conversions"
    title = (
        f"Attribution of {doc['conversions']:,} {doc['conversion']} conversions "
        f"({unit} {doc['total']}) by {args.by}, rules {rt.rules.ref}"
    )
    if left_out is not None:
        doc["accounts"], doc["leads_of_no_account"] = accounts, left_out
        title = (
            f"Account attribution: {doc['conversions']:,} accounts reached "
            f"{doc['conversion']} ({unit} {doc['total']}) by {args.by}, rules {rt.rules.ref}; "
            f"{left_out:,} leads of no account left out"
        )
    print(render(args.format, rows, title=title, document=doc))
    _say_left_out(args.format, doc["left_out"], doc["currency"])
    return 0


def _say_left_out(fmt: str, rows: list[dict[str, Any]], currency: str | None) -> None:
    """Amounts no rate put in the report's currency, under the table (CSV: on stderr; JSON
    carries them in the document)."""
    if not rows or fmt == "json":
        return
    parts = [f"{r['what']} {r['currency']} {r['amount']} ({r['items']})" for r in rows]
    note = f"left out (no rate into {currency}): " + ", ".join(parts)
    print(note, file=sys.stderr if fmt == "csv" else sys.stdout)


TITLES = {
    "funnel": "Funnel of the leads created in the window (reached, conversion, time in stage)",
    "sources": "Funnel by source (the lead's first touch)",
    "exits": "Time in exit stages",
    "cycle": "Sales cycle (lead created -> customer)",
    "flow": "Lead flow: stage entries per period and source",
    "followup": "Sales follow-up of the window's MQLs",
    "dials": "Dials (calls logged) before the outcome",
    "reasons": "Rejections, disqualifications and lost deals by reason",
    "email": "Email by campaign (rates over delivered)",
    "clusters": "Touchpoint clusters before conversion",
    "money": "Cost per stage, revenue, ROI",
}


def kpis(args: argparse.Namespace) -> int:
    window = window_of(args)
    sections = SECTIONS if args.section == "all" else (args.section,)
    if args.format == "csv" and len(sections) > 1:
        raise LeadEngineError(
            "CSV holds one table: choose one with --section (e.g. --section money)"
        )
    # lead by lead: memory grows with the groups, not the leads
    with open_runtime(create=False) as rt:
        bar = Progress("reading touchpoints")
        doc = report.kpis_streamed(
            rt.db,
            rt.rules,
            window,
            period=args.period,
            by=args.by,
            model=args.model,
            currency=args.currency,
            progress=bar.update,
        )
        bar.done(f"{doc['leads']:,} leads")
    if args.format == "json":
        print(to_json({k: v for k, v in doc.items() if k not in SECTIONS or k in sections}))
        return 0
    left_out = doc["money_left_out"] if "money" in sections else []
    if args.format == "csv":
        print(render("csv", doc[sections[0]]), end="")
        _say_left_out("csv", left_out, doc["currency"])
        return 0
    blocks = []
    for name in sections:
        title = TITLES[name]
        if name == "money":
            title += f" in {doc['currency']} (attributed revenue: {doc['money_model']} model)"
        blocks.append(render("table", doc[name], title=title))
    print("\n\n".join(blocks))
    _say_left_out("table", left_out, doc["currency"])
    return 0


def html(args: argparse.Namespace) -> int:
    window = window_of(args)
    # KPIs and attribution in one pass over streamed journeys
    with open_runtime(create=False) as rt:
        bar = Progress("reading touchpoints")
        doc = report.page_document_streamed(
            rt.db,
            rt.rules,
            window,
            period=args.period,
            by=args.by,
            model=args.model,
            currency=args.currency,
            progress=bar.update,
        )
        bar.done(f"{doc['leads']:,} leads")
    args.output.write_text(page(doc), encoding="utf-8")
    print(f"wrote {args.output} ({args.output.stat().st_size:,} bytes)", file=sys.stderr)
    return 0


def _report_parsers(report: Subparsers) -> None:
    from engine.analytics.attribution import BY, MODELS
    from engine.analytics.report import SECTIONS

    raw = argparse.RawDescriptionHelpFormatter
    p = report.add_parser(
        "attribution",
        help="touchpoint contribution under one or all attribution models",
        formatter_class=raw,
        description="Credit for conversions (or revenue) by channel, campaign or content. A "
        "path is a lead's touches ordered by time, up to the moment it first reached the "
        "conversion stage. Credits of every model add up exactly to the conversions (revenue); "
        "conversions with no touch show as '(no touchpoint)'. Weights: rules `attribution`.",
        epilog="models: " + ", ".join(MODELS) + "\n\n" + WINDOW_HELP + "\nexamples:\n"
        "  leadengine report attribution --model all\n"
        "  leadengine report attribution --model markov --by campaign --value revenue\n"
        "  leadengine report attribution --conversion sql --from 2026-01-01 --format csv\n"
        "  leadengine report attribution --by-account --value revenue\n",
    )
    p.add_argument("--model", default="all", choices=("all", *MODELS), help="default all")
    p.add_argument("--by", default="channel", choices=BY, help="default channel")
    p.add_argument(
        "--value",
        default="conversions",
        choices=("conversions", "revenue"),
        help="credit conversions, or the revenue of won deals (default conversions)",
    )
    p.add_argument(
        "--conversion",
        choices=("mql", "sql", "opportunity", "customer"),
        help="stage that counts as converted (default: rules, shipped customer)",
    )
    p.add_argument("--save", action="store_true", help="also write attribution_credits")
    p.add_argument(
        "--by-account",
        action="store_true",
        help="paths of accounts, not leads: an account converts when its first lead does and "
        "its won deals credit the touches of all its people (leads of no account left out; "
        "docs/accounts.md)",
    )
    window_args(p)
    fmt(p)
    handles(p, attribution)

    p = report.add_parser(
        "kpis",
        help="funnel, time in stage, cycle, lead flow, follow-up, email, clusters, cost, ROI",
        formatter_class=raw,
        description="Lifecycle and ROI KPIs. The funnel's cohort is the leads created in the "
        "window; flows, emails and reasons count what happened in it; costs are prorated by "
        "day. Money's attributed revenue and ROI use --model (customers, by revenue).",
        epilog="sections: " + ", ".join(SECTIONS) + "\n\n" + WINDOW_HELP + "\nexamples:\n"
        "  leadengine report kpis\n"
        "  leadengine report kpis --section money --by campaign --model w_shaped\n"
        "  leadengine report kpis --section flow --period week --format csv\n",
    )
    p.add_argument(
        "--section", default="all", choices=("all", *SECTIONS), help="one section (default all)"
    )
    _kpi_args(p, MODELS)
    fmt(p)
    handles(p, kpis)

    p = report.add_parser(
        "html",
        help="one self-contained HTML page with charts (funnel, attribution, flow, cost)",
        formatter_class=raw,
        epilog=WINDOW_HELP + "\nexample:\n  leadengine report html report.html --from 2026-01-01\n",
    )
    p.add_argument("output", type=output_file, metavar="OUT.html", help="the page to write")
    _kpi_args(p, MODELS)
    handles(p, html)


def _kpi_args(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    p.add_argument("--period", default="month", choices=("week", "month"), help="lead flow")
    p.add_argument(
        "--by",
        default="channel",
        choices=("channel", "campaign"),
        help="group sources, flow and money by (default channel)",
    )
    p.add_argument("--model", default="linear", choices=models, help="for ROI (default linear)")
    window_args(p)


def funnel_text(funnel: dict[str, Any]) -> str:
    text = render(
        "table",
        funnel["stages"],
        columns=["stage", "reached", "conversion_pct", "now"],
        title=f"Funnel: {funnel['leads_total']} leads ({funnel['anonymous_now']} still anonymous)",
    )
    exits = ", ".join(f"{k} {v}" for k, v in funnel["exits_now"].items())
    return f"{text}\n\nexits now: {exits}"


def report_funnel(args: argparse.Namespace) -> int:
    window = window_of(args)
    with open_runtime(create=False) as rt:
        if any(window.describe().values()):  # lead by lead: memory does not grow with leads
            bar = Progress("reading touchpoints")
            funnel = report.funnel_streamed(rt.db, window, progress=bar.update)
            bar.done(f"{funnel['leads_total']:,} leads")
        else:
            funnel = queries.funnel(rt.db)
    funnel.update(window.describe())
    if args.format == "table":
        cut = ", ".join(
            f"--{k.replace('_', '-')} {v.isoformat()}" for k, v in window.describe().items() if v
        )
        print(funnel_text(funnel) + (f"\n({cut})" if cut else ""))
    else:
        print(render(args.format, funnel["stages"], document=funnel))
    return 0
