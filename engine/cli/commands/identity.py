"""`leadengine report identity`: links, merges and unmerges over time, and the people they make
(docs/identity.md). Reads the read model: `identity_links` and the people folded from it."""

from __future__ import annotations

import argparse
from typing import Any

from psycopg import sql

from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, window_args
from engine.cli.commands.leads import moment_arg
from engine.cli.output import render, to_json
from engine.postgres.db import Database
from engine.projections import identity
from engine.runtime import open_runtime
from engine.stitching.identity_map import KINDS

PERIODS = ("day", "week", "month")


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


def identity_report(
    db: Database,
    *,
    as_of: Any = None,
    occurred_by: Any = None,
    start: Any = None,
    end: Any = None,
    period: str = "week",
) -> dict[str, Any]:
    """Identity decisions per period and kind (happened in [start, end), recorded by as_of,
    happened by occurred_by), and the people the links so cut make."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: expected one of {', '.join(PERIODS)}")
    cuts: list[sql.Composable] = [identity.link_cut(as_of, occurred_by)]
    if start is not None:
        cuts.append(sql.SQL("occurred_at >= {}").format(sql.Literal(start)))
    if end is not None:
        cuts.append(sql.SQL("occurred_at < {}").format(sql.Literal(end)))
    table = sql.Identifier(db.schema, identity.TABLE)
    per_period = sql.SQL(
        "SELECT date_trunc({p}, occurred_at AT TIME ZONE 'UTC')::date AS period, kind, count(*) "
        "FROM {t} WHERE {cut} GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(p=sql.Literal(period), t=table, cut=sql.SQL(" AND ").join(cuts))
    people = sql.SQL(
        "SELECT count(DISTINCT person_id), count(*), coalesce(max(leads), 0) FROM ({}) p"
    ).format(identity.people_sql(db.schema, as_of, occurred_by))
    with db.connect() as conn:
        counts: dict[Any, dict[str, int]] = {}
        for day, kind, n in conn.execute(per_period):
            counts.setdefault(day, dict.fromkeys(KINDS, 0))[kind] = n
        persons, leads, largest = conn.execute(people).fetchone() or (0, 0, 0)
    rows = [{"period": day.isoformat(), **by_kind} for day, by_kind in counts.items()]
    totals = {k: sum(r[k] for r in rows) for k in KINDS}
    return {
        "period": period,
        "as_of": as_of,
        "occurred_by": occurred_by,
        "totals": totals,
        "people": {"joined": persons, "leads_in_them": leads, "largest": largest},
        "by_period": rows,
    }


def report_identity(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
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
