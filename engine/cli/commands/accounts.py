"""`leadengine account show | explain KEY` and `report accounts`, over the account tables
(read by engine/analytics/account_queries.py; this module parses and renders)."""

from __future__ import annotations

import argparse
from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from engine.aggregates.account import Account, is_provisional
from engine.analytics import account_queries as queries
from engine.cli.args import WINDOW_HELP, Commands, fmt, handles, positive_int, window_args
from engine.cli.commands.leads import moment_arg
from engine.cli.output import render, to_json
from engine.domain.accounts.scoring import AccountScore, Point, unmet
from engine.domain.errors import LeadEngineError, echoed
from engine.domain.lifecycle import RANK
from engine.runtime import Runtime, open_runtime


def register(commands: Commands) -> None:
    account = commands.group(
        "account", help="one account: show, explain, history", dest="account_command"
    )
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
    p = account.add_parser(
        "history",
        help="an account's facts and decisions in time order: updates, leads matched, stages "
        "first reached, MQA",
    )
    p.add_argument("key", help="the account's id (the subject of its account.updated events)")
    fmt(p)
    handles(p, history)
    report_group = commands.group(
        "report", help="reports over the read model", dest="report_command", metavar="REPORT"
    )
    p = report_group.add_parser(
        "accounts",
        help="accounts: MQAs, buying-group coverage, account funnel, how leads were matched, "
        "score distribution, top ones",
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
        super().__init__(
            f"no account with id {echoed(key)} in the read model (`leadengine project`?)"
        )


def _account(rt: Runtime, key: str) -> dict[str, Any]:
    found = queries.account(rt.db, key)
    if found is None:
        raise AccountNotFound(key)
    return found


PROFILE = ("name", "domains", "industry", "employees", "annual_revenue", "country", "owner", "tier")
SCORE = ("fit", "engagement", "score", "members", "engaged", "mqa_at", "mqa_trigger", "mqa_rules")
GROUP = ("segment", "roles_covered", "roles_missing", "group_engagement")


def show(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        acc = _account(rt, args.key)
        members = queries.members(rt.db, acc["account_id"])
        group = queries.group(rt.db, acc["account_id"])
    provisional = is_provisional(args.key)
    if args.format == "json":
        doc = {k: acc[k] for k in ("account_key", *PROFILE, *SCORE, *GROUP)}
        print(to_json({**doc, "provisional": provisional, "buying_group": group, "leads": members}))
        return 0
    head = [{"field": k, "value": acc[k]} for k in (*PROFILE, "updated_at", *SCORE, *GROUP)]
    kind = " (provisional: opened for unmatched leads on its domain)" if provisional else ""
    print(render(args.format, head, title=f"Account {args.key}{kind}"))
    if args.format != "csv":
        print()
        title = f"Buying group ({acc['segment'] or 'no segment'}): " + (
            "missing " + ", ".join(acc["roles_missing"])
            if acc["roles_missing"]
            else "every required role covered"
        )
        print(render("table", group, title=title))
        print()
        forgotten = (acc["members"] or 0) - len(members)
        note = f", {forgotten} forgotten: counted in the score, not listed" if forgotten else ""
        print(render("table", members, title=f"Its leads ({len(members)}{note})"))
    return 0


def explain(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        acc = _account(rt, args.key)
        members = queries.members(rt.db, acc["account_id"])
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
        acc["segment"],
        tuple(acc["roles_covered"] or ()),
        tuple(acc["roles_missing"] or ()),
        float(acc["group_engagement"] or 0),
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
    if args.as_of or args.occurred_by:
        raise LeadEngineError(
            "report accounts: --as-of and --occurred-by are not supported yet (the account "
            "tables keep current state only; docs/accounts.md)"
        )
    start, end = moment_arg(args.start, "--from"), moment_arg(args.end, "--to")
    with open_runtime(create=False) as rt:
        scores = queries.scores(rt.db)
        rules_used = queries.matched_by(rt.db)
        segments = queries.segments(rt.db)
        roles = queries.roles(rt.db)
        funnel = queries.funnel(rt.db)
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
    summary["covered"] = sum(int(r["covered"]) for r in segments)
    if args.format == "json":
        doc = {**summary, "matched_by": rules_used, "distribution": distribution}
        doc |= {"buying_groups": segments, "roles": roles, "funnel": funnel}
        print(to_json({**doc, "top": scores[: args.limit]}))
        return 0
    title = (
        f"{summary['accounts']} accounts, {summary['with_leads']} with leads, "
        f"{summary['mqas']} MQAs" + (" in the window" if start or end else "")
    )
    title += f", {summary['covered']} with their buying group covered"
    print(render(args.format, scores[: args.limit], title=title))
    if args.format != "csv":
        print()
        print(render("table", segments, title="Buying groups by segment (accounts with leads)"))
        print()
        print(render("table", roles, title="Buying-group roles (accounts with leads)"))
        print()
        title = "Account funnel: accounts reaching each stage (when their first lead does)"
        print(render("table", funnel, title=title))
        print()
        print(render("table", rules_used, title="Leads by matching rule"))
        print()
        print(render("table", distribution, title="Account score distribution"))
    return 0


def history(args: argparse.Namespace) -> int:
    """The account's updates (from its aggregate), its leads' match decisions as they were
    taken (recorded on the account: `Account.MemberDecided`; a lead with none recorded, as
    decided now), the stages it first reached (when its first lead did, and which lead) and
    its MQA, in time order."""
    with open_runtime(create=False) as rt:
        acc = _account(rt, args.key)
        try:
            account: Account = rt.app.repository.get(acc["account_id"])
        except AggregateNotFoundError:
            raise AccountNotFound(args.key) from None
        # a lead leaving is dated by its inputs: the lead and the account as updated then
        decided: list[tuple[Account.MemberDecided, datetime | None]] = []
        latest: datetime | None = None
        for e in rt.app.events.get(acc["account_id"]):
            if isinstance(e, Account.Updated):
                latest = max(latest or e.occurred_at, e.occurred_at)
            elif isinstance(e, Account.MemberDecided):
                at = e.decided_at
                if not e.joined and at is not None and latest is not None:
                    at = max(at, latest)
                decided.append((e, at))
        keys = queries.lead_keys(rt.db, sorted({UUID(e.lead_id) for e, _ in decided}))
        matched = queries.matches(rt.db, acc["account_id"])
        stages = queries.stages_reached(rt.db, acc["account_id"])
    events: list[dict[str, Any]] = []
    for at, _source, event_id, data in account.updates:
        fields = ", ".join(f"{k}={data[k]}" for k in sorted(data) if k != "schema_version")
        events.append({"at": at, "what": "account updated", "detail": fields, "id": event_id})
    for e, at in decided:
        lead = keys.get(UUID(e.lead_id)) or "(a forgotten lead)"
        if e.joined and e.baseline:  # matched before migration 22, recorded when it changed
            what = "lead matched"
            detail = (
                f"lead {lead} by {e.rule}: {e.reason} (matched before decisions were recorded; "
                "recorded when it first changed, dated by its inputs)"
            )
        elif e.joined:
            what, detail = "lead matched", f"lead {lead} by {e.rule}: {e.reason}"
        else:
            what, detail = "lead left", f"lead {lead}: {e.reason}"
        events.append({"at": at, "what": what, "detail": detail, "id": None})
    recorded = {UUID(e.lead_id) for e, _ in decided}
    for r in matched:  # matched before decisions were recorded (migration 22): as decided now
        if r["lead_id"] in recorded:
            continue
        detail = f"lead {r['lead_key']} by {r['rule']}: {r['reason']} (as decided now)"
        events.append({"at": r["at"], "what": "lead matched", "detail": detail, "id": None})
    for r in stages:
        detail = f"first lead there: {r['lead_key']}"
        events.append(
            {"at": r["at"], "what": f"reached {r['stage']}", "detail": detail, "id": None}
        )
    if acc["mqa_at"] is not None:
        detail = f"{acc['mqa_reason']} ({acc['mqa_rules']})"
        events.append(
            {"at": acc["mqa_at"], "what": "MQA", "detail": detail, "id": acc["mqa_trigger"]}
        )
    order = {"account updated": 0, "lead matched": 1, "lead left": 1, "MQA": 99}
    order |= {f"reached {stage}": 1 + rank for stage, rank in RANK.items()}
    events.sort(key=lambda e: (e["at"] is None, e["at"] or 0, order[e["what"]], e["detail"]))
    if args.format == "json":
        print(to_json({"account": args.key, "history": events}))
        return 0
    title = f"History of account {args.key} ({len(events)} entries; matches as decided then)"
    print(render(args.format, events, columns=["at", "what", "detail", "id"], title=title))
    return 0
