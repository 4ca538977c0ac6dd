"""`leadengine report duplicates`: what the duplicate rules (`identity.duplicates`) found, open
suggestions per rule and counts per rule over time; `leadengine duplicates accept | dismiss`:
someone's decision on an open suggestion (docs/identity.md#duplicates). Ids only: the values
matched are never stored, so never shown."""

from __future__ import annotations

import argparse
import getpass
import uuid
from datetime import UTC, datetime

from engine.analytics.duplicate_queries import PERIODS, duplicates_report
from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, window_args
from engine.cli.commands.reporting import window_of
from engine.cli.output import render, to_json
from engine.domain.errors import echoed
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
        "period and rule how many pairs were suggested, merged, unmerged, superseded or "
        "dismissed (`leadengine duplicates accept | dismiss` decide a suggestion; CSV: one "
        "table, a `row` column saying suggestion or period) "
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
    decide = commands.group(
        "duplicates",
        help="accept or dismiss an open duplicate suggestion",
        dest="duplicates_command",
        metavar="ACTION",
    )
    for action, helped, what in (
        (
            "accept",
            "merge the pair: the younger lead becomes a duplicate of the older",
            "records an engine merge on the younger lead (the loser), as an upstream "
            "lead.merged would: one person from now on, `by` and `reason` kept in `lead "
            "history` and `lead export`; an upstream lead.unmerged (subject the loser, winner "
            "the older lead's key) undoes it.",
        ),
        (
            "dismiss",
            "two people: the rules do not suggest the pair again",
            "records the decision on the younger lead (the loser), shown in `lead history` "
            "and `lead export`; the pair's state becomes dismissed, and the rules never "
            "suggest it again.",
        ),
    ):
        p = decide.add_parser(
            action,
            help=helped,
            description=f"{action} the open duplicate suggestion(s) of LOSER_ID as a duplicate "
            f"of WINNER_ID (every rule that suggested the pair): {what} Both ids are lead ids "
            "as `leadengine report duplicates` lists them (winner_id, loser_id); a pair with "
            "no open suggestion is refused (exit 2).",
            epilog="example:\n  leadengine report duplicates\n"
            f"  leadengine duplicates {action} 3f2a...e1 9b07...42 --reason 'ticket 812' "
            "--by ops@example.com",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("winner", type=lead_id, metavar="WINNER_ID", help="the older lead's id")
        p.add_argument("loser", type=lead_id, metavar="LOSER_ID", help="the younger lead's id")
        p.add_argument("--reason", required=True, help="why (a ticket id; nothing personal)")
        p.add_argument("--by", help="who decided (default: the OS user)")
        handles(p, decide_pair)


def lead_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{echoed(value)} is not a lead id (a UUID, as `report duplicates` lists it)"
        ) from None


def decide_pair(args: argparse.Namespace) -> int:
    accept = args.duplicates_command == "accept"
    by = args.by or getpass.getuser()
    with open_runtime(create=False) as rt:
        pairs = rt.app.decide_duplicate(
            args.winner, args.loser, accept=accept, by=by, reason=args.reason,
            at=datetime.now(UTC),
        )  # fmt: skip
        rt.projector.run(until_caught_up=True)
    rules = ", ".join(p.rule for p in pairs)
    done = "merged into" if accept else "dismissed as a duplicate of"
    print(f"lead {args.loser} {done} lead {args.winner} ({rules}) by {by}")
    return 0


#: an open suggestion's columns in the CSV
SUGGESTION_COLUMNS = [
    "rule",
    "match",
    "winner_id",
    "loser_id",
    "winner_person_id",
    "loser_person_id",
    "rules_version",
    "suggested_at",
]


def report_duplicates(args: argparse.Namespace) -> int:
    window = window_of(args)  # the same checks as every report (--from before --to, ...)
    with open_runtime(create=False) as rt:
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
    if args.format == "csv":  # one table: each open suggestion, then each period's counts
        rows = [{"row": "suggestion", **s} for s in doc["suggestions"]]
        rows += [{"row": "period", **p} for p in doc["by_period"]]
        columns = ["row", *SUGGESTION_COLUMNS, "period", *STATES]
        print(render("csv", rows, columns=columns), end="")
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
