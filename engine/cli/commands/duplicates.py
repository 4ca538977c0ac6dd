"""`leadengine report duplicates`: what the duplicate rules (`identity.duplicates`) found, open
suggestions per rule and counts per rule over time (docs/identity.md#duplicates). Ids only:
the values matched are never stored, so never shown."""

from __future__ import annotations

import argparse

from engine.analytics.duplicate_queries import PERIODS, duplicates_report
from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, window_args
from engine.cli.commands.reporting import window_of
from engine.cli.output import render, to_json
from engine.postgres.duplicates import STATES
from engine.runtime import open_runtime


def register(commands: Commands) -> None:
    report = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report.add_parser(
        "duplicates",
        help="open duplicate suggestions per rule; pairs per rule and period",
        description="What the duplicate rules (identity.duplicates in the rules file) found: "
        "every open suggestion (the older lead, the younger one, their people now), and per "
        "period and rule how many pairs were suggested, merged, unmerged or superseded "
        "(docs/identity.md#duplicates). A pair is dated by its younger lead's first sight of "
        "the value (event time). Ids only: the e-mail or phone matched is never stored. "
        "--from/--to and --occurred-by cut pairs on that date, --as-of on when the engine "
        "recorded them (states are today's).",
        epilog="examples:\n  leadengine report duplicates\n"
        "  leadengine report duplicates --period month --format json\n\n" + WINDOW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    window_args(p, currency=False)
    p.add_argument(
        "--period",
        choices=PERIODS,
        default="week",
        help="count pairs per day, week or month (default week)",
    )
    fmt(p)
    handles(p, report_duplicates)


def report_duplicates(args: argparse.Namespace) -> int:
    window = window_of(args)  # the same checks as every report (--from before --to, ...)
    with open_runtime() as rt:
        doc = duplicates_report(
            rt.db,
            period=args.period,
            as_of=window.as_of,
            occurred_by=window.occurred_by,
            start=window.start,
            end=window.end,
        )
    if args.format == "json":
        print(to_json(doc))
        return 0
    if args.format == "csv":
        print(render("csv", doc["by_period"], columns=["period", "rule", *STATES]), end="")
        return 0
    print(
        render(
            "table",
            doc["suggestions"],
            columns=["rule", "match", "winner_id", "loser_id", "loser_person_id", "suggested_at"],
            title="Open duplicate suggestions",
        )
    )
    print(
        render(
            "table",
            doc["by_period"],
            columns=["period", "rule", *STATES],
            title=f"Duplicate pairs per {doc['period']} and rule",
        )
    )
    opened = ", ".join(f"{rule} {n}" for rule, n in doc["open"].items()) or "none"
    print(f"\nopen suggestions per rule: {opened}")
    return 0
