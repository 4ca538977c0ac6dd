"""`leadengine report identity`: links, merges and unmerges over time, and the people they make
(docs/identity.md). Reads the read model: `identity_links` and the people folded from it
(engine/analytics/identity_queries.py); this module parses and renders."""

from __future__ import annotations

import argparse

from engine.analytics.identity_queries import PERIODS, identity_report
from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, window_args
from engine.cli.commands.leads import moment_arg
from engine.cli.output import render, to_json
from engine.runtime import open_runtime
from engine.stitching.identity_map import KINDS


def register(commands: Commands) -> None:
    report = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report.add_parser(
        "identity",
        help="links, merges and unmerges per period; the people they make",
        description="Identity decisions (identity.linked, lead.merged, lead.unmerged) per "
        "period and kind, and how many people of several leads they make (docs/identity.md). "
        "--from/--to: the decisions that happened in the window.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=WINDOW_HELP,
    )
    window_args(p, currency=False)
    p.add_argument(
        "--period",
        choices=PERIODS,
        default="week",
        help="count decisions per day, week or month (default week)",
    )
    fmt(p)
    handles(p, report_identity)


def report_identity(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        doc = identity_report(
            rt.db,
            as_of=moment_arg(args.as_of),
            occurred_by=moment_arg(args.occurred_by, "--occurred-by"),
            start=moment_arg(args.start, "--from"),
            end=moment_arg(args.end, "--to"),
            period=args.period,
        )
    if args.format == "json":
        print(to_json(doc))
    elif args.format == "csv":
        print(render("csv", doc["by_period"], columns=["period", *KINDS]), end="")
    else:
        people = doc["people"]
        print(
            render(
                "table",
                doc["by_period"],
                columns=["period", *KINDS],
                title=f"Identity decisions per {doc['period']}",
            )
        )
        print(
            f"\n{people['joined']} people of several leads ({people['leads_in_them']} leads; "
            f"largest {people['largest']}); totals: "
            + ", ".join(f"{k} {v}" for k, v in doc["totals"].items())
        )
    return 0
