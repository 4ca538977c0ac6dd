"""`leadengine account show | explain KEY` and `report accounts`, over the account tables."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any
from uuid import UUID

from psycopg import sql

from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, positive_int, window_args
from engine.cli.output import render, to_json
from engine.domain.accounts.scoring import AccountScore, Point, unmet
from engine.domain.errors import LeadEngineError
from engine.runtime import Runtime, open_runtime


def register(commands: Commands) -> None:
    account = commands.group("account", help="one account: show, explain", dest="account_command")
    p = account.add_parser("show", help="an account's firmographics, score, MQA and leads")
    p.add_argument("key", help="the account's id (the subject of its account.updated events)")
    fmt(p)
    handles(p, show)
    p = account.add_parser(
        "explain", help="an account's score point by point, its MQA decision, how leads matched"
    )
    p.add_argument("key", help="the account's id (the subject of its account.updated events)")
    fmt(p)
    handles(p, explain)
    report_group = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report_group.add_parser(
        "accounts",
        help="accounts: MQAs, how leads were matched, score distribution, top ones",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The accounts as the read model holds them now. --from/--to count the "
        "MQAs decided in the window; --as-of and --occurred-by are refused (account tables "
        "keep current state only, docs/accounts.md).",
        epilog=WINDOW_HELP,
    )
    window_args(p, currency=False)
    p.add_argument("--limit", type=positive_int, default=30, help="accounts listed (default 30)")
    fmt(p)
    handles(p, report)


class AccountNotFound(LeadEngineError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no account with id {key!r} in the read model (`leadengine project`?)")


def _rows(rt: Runtime, query: str, *params: Any) -> list[dict[str, Any]]:
    with rt.db.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(query).format(s=sql.Identifier(rt.db.schema)), params)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _account(rt: Runtime, key: str) -> dict[str, Any]:
    found = _rows(
        rt,
        "SELECT a.*, c.fit, c.engagement, c.score, c.members, c.engaged, c.points, c.mqa_at, "
        "c.mqa_trigger, c.mqa_rules, c.mqa_reason, c.rules_version FROM {s}.account_state a "
        "LEFT JOIN {s}.account_scores c USING (account_id) WHERE a.account_key = %s",
        key,
    )
    if not found:
        raise AccountNotFound(key)
    return found[0]


def _members(rt: Runtime, account_id: UUID) -> list[dict[str, Any]]:
    return _rows(
        rt,
        "SELECT l.lead_key, l.stage, s.engagement, m.rule, m.reason FROM {s}.account_members m "
        "JOIN {s}.account_signals s USING (lead_id) LEFT JOIN {s}.lead_state l USING (lead_id) "
        "WHERE m.account_id = %s AND l.erased_at IS NULL "  # forgotten: counted, never listed
        "ORDER BY s.engagement DESC, l.lead_key",
        account_id,
    )


PROFILE = ("name", "domains", "industry", "employees", "annual_revenue", "country", "owner", "tier")
SCORE = ("fit", "engagement", "score", "members", "engaged", "mqa_at", "mqa_trigger", "mqa_rules")


def show(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        acc = _account(rt, args.key)
        members = _members(rt, acc["account_id"])
    if args.format == "json":
        print(to_json({**{k: acc[k] for k in ("account_key", *PROFILE, *SCORE)}, "leads": members}))
        return 0
    head = [{"field": k, "value": acc[k]} for k in (*PROFILE, "updated_at", *SCORE)]
    print(render(args.format, head, title=f"Account {args.key}"))
    if args.format != "csv":
        print()
        forgotten = (acc["members"] or 0) - len(members)
        note = f", {forgotten} forgotten: counted in the score, not listed" if forgotten else ""
        print(render("table", members, title=f"Its leads ({len(members)}{note})"))
    return 0


def explain(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        acc = _account(rt, args.key)
        members = _members(rt, acc["account_id"])
        rules = rt.rules
    points = acc["points"] or []
    result = AccountScore(
        args.key,
        float(acc["fit"] or 0),
        float(acc["engagement"] or 0),
        float(acc["score"] or 0),
        int(acc["members"] or 0),
        int(acc["engaged"] or 0),
        tuple(Point(**p) for p in points),
    )
    missing = unmet(result, rules.accounts)
    if acc["mqa_at"] is not None:
        mqa = f"MQA since {acc['mqa_at']} ({acc['mqa_rules']}, trigger {acc['mqa_trigger']})"
    else:
        mqa = "not an MQA: " + "; ".join(missing) if missing else "qualifies (next projection)"
    if args.format == "json":
        doc = {"account": args.key, "points": points, "mqa": mqa, "unmet": missing}
        print(to_json({**doc, "leads": members}))
        return 0
    w = rules.accounts.combine
    title = (
        f"Score of account {args.key} under {acc['rules_version']}: {result.total} = fit "
        f"{result.fit} x {w.fit_weight} + engagement {result.engagement} x "
        f"{w.engagement_weight}. {mqa}"
    )
    print(render(args.format, points, columns=["part", "rule", "points", "reason"], title=title))
    if args.format != "csv":
        print()
        print(render("table", members, title="Its leads: how each was matched"))
    return 0


BUCKETS = ((80, "80-100"), (60, "60-79"), (40, "40-59"), (20, "20-39"), (0, "0-19"))


def report(args: argparse.Namespace) -> int:
    """MQAs, how leads were matched, score distribution, the top accounts."""
    from engine.cli.commands.leads import moment_arg  # it imports this module

    if args.as_of or args.occurred_by:
        raise LeadEngineError(
            "report accounts: --as-of and --occurred-by are not supported yet (the account "
            "tables keep current state only; docs/accounts.md)"
        )
    start, end = moment_arg(args.start, "--from"), moment_arg(args.end, "--to")
    with open_runtime() as rt:
        scores = _rows(
            rt,
            "SELECT account_key, score, fit, engagement, members, engaged, mqa_at "
            "FROM {s}.account_scores ORDER BY score DESC, account_key",
        )
        rules_used = _rows(
            rt,
            "SELECT coalesce(rule, 'none') AS rule, count(*) AS leads FROM "
            "{s}.account_members GROUP BY 1 ORDER BY 2 DESC, 1",
        )
    buckets: Counter[str] = Counter()
    for row in scores:
        buckets[next(label for low, label in BUCKETS if float(row["score"]) >= low)] += 1
    distribution = [{"score": label, "accounts": buckets[label]} for _, label in BUCKETS]
    mqas = [
        r
        for r in scores
        if r["mqa_at"] is not None
        and (start is None or r["mqa_at"] >= start)
        and (end is None or r["mqa_at"] < end)
    ]
    summary = {
        "accounts": len(scores),
        "mqas": len(mqas),
        "with_leads": sum(1 for r in scores if r["members"]),
    }
    if args.format == "json":
        doc = {**summary, "matched_by": rules_used, "distribution": distribution}
        print(to_json({**doc, "top": scores[: args.limit]}))
        return 0
    title = (
        f"{summary['accounts']} accounts, {summary['with_leads']} with leads, "
        f"{summary['mqas']} MQAs" + (" in the window" if start or end else "")
    )
    print(render(args.format, scores[: args.limit], title=title))
    if args.format != "csv":
        print()
        print(render("table", rules_used, title="Leads by matching rule"))
        print()
        print(render("table", distribution, title="Account score distribution"))
    return 0


def lead_match(rt: Runtime, lead_id: UUID) -> dict[str, Any] | None:
    """The lead's account decision (`lead explain`), or None before the projector ran."""
    found = _rows(
        rt,
        "SELECT account_key, rule, reason, candidates, decided_at, rules_version "
        "FROM {s}.account_members WHERE lead_id = %s",
        lead_id,
    )
    return found[0] if found else None
