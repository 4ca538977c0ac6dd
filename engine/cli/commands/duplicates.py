"""`leadengine report duplicates`: what the duplicate rules (`identity.duplicates`) found, open
suggestions per rule and counts per rule over time (docs/identity.md#duplicates). Ids only:
the values matched are never stored, so never shown."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import sql

from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, window_args
from engine.cli.commands.leads import moment_arg
from engine.cli.output import render, to_json
from engine.postgres.db import Database
from engine.postgres.duplicates import STATES
from engine.projections import registry
from engine.runtime import open_runtime

PERIODS = ("day", "week", "month")


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


def duplicates_report(
    db: Database,
    *,
    period: str = "week",
    as_of: Any = None,
    occurred_by: Any = None,
    start: Any = None,
    end: Any = None,
) -> dict[str, Any]:
    """Open suggestions (oldest first) and pairs per period, rule and state: the pairs dated in
    [start, end) and by `occurred_by`, recorded by `as_of` (None: no cut)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: expected one of {', '.join(PERIODS)}")
    cuts: list[sql.Composable] = [sql.SQL("true")]
    for column, op, moment in (
        ("recorded_at", "<=", as_of),
        ("suggested_at", "<=", occurred_by),
        ("suggested_at", ">=", start),
        ("suggested_at", "<", end),
    ):
        if moment is not None:
            cuts.append(
                sql.SQL("{} " + op + " {}").format(sql.Identifier(column), sql.Literal(moment))
            )
    where = sql.SQL(" AND ").join(cuts)
    view = registry.VIEWS["duplicate_suggestions"].select()
    source = sql.SQL("(" + view + ") d").format(s=sql.Identifier(db.schema))
    open_rows = sql.SQL(
        "SELECT rule, match, winner_id, loser_id, winner_person_id, loser_person_id, "
        "rules_version, suggested_at FROM {} WHERE state = 'open' AND {} "
        "ORDER BY rule, suggested_at, winner_id, loser_id"
    ).format(source, where)
    per_period = sql.SQL(
        "SELECT date_trunc({p}, suggested_at AT TIME ZONE 'UTC')::date AS period, rule, state, "
        "count(*) FROM {t} WHERE {w} GROUP BY 1, 2, 3 ORDER BY 1, 2"
    ).format(
        p=sql.Literal(period),
        t=sql.Identifier(db.schema, registry.DUPLICATE_SUGGESTIONS.name),
        w=where,
    )
    with db.connect() as conn:
        cur = conn.execute(open_rows)
        names = [d.name for d in cur.description or ()]
        suggestions = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        counts: dict[tuple[Any, str], dict[str, int]] = {}
        for day, rule, state, n in conn.execute(per_period):
            counts.setdefault((day, rule), dict.fromkeys(STATES, 0))[state] = n
    rows = [
        {"period": day.isoformat(), "rule": rule, **by_state}
        for (day, rule), by_state in counts.items()
    ]
    for s in suggestions:
        s["suggested_at"] = s["suggested_at"].isoformat()
        for k in ("winner_id", "loser_id", "winner_person_id", "loser_person_id"):
            s[k] = str(s[k])
    rules: dict[str, int] = {}
    for s in suggestions:
        rules[s["rule"]] = rules.get(s["rule"], 0) + 1
    return {"period": period, "open": rules, "suggestions": suggestions, "by_period": rows}


def report_duplicates(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        doc = duplicates_report(
            rt.db,
            period=args.period,
            as_of=moment_arg(args.as_of),
            occurred_by=moment_arg(args.occurred_by, "--occurred-by"),
            start=moment_arg(args.start, "--from"),
            end=moment_arg(args.end, "--to"),
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
