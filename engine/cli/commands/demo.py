"""`leadengine demo` and `generate`: the engine on generated journeys, and the journeys alone."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.analytics import queries
from engine.cli.args import Commands, fmt, handles, int_from, output_file, share
from engine.cli.commands.ingest import ingest_with_progress
from engine.cli.commands.project import project_with_progress
from engine.cli.commands.reporting import funnel_text
from engine.cli.output import prose, render, to_json
from engine.domain import generator
from engine.domain.errors import LeadEngineError
from engine.logs import configure_logging
from engine.postgres import db as dbmod
from engine.runtime import open_runtime
from engine.settings import get_settings


def register(commands: Commands) -> None:
    p = commands.add(
        "demo",
        help="generate realistic journeys, ingest, project, summarise",
        description="Runs the whole engine on generated journeys in a separate "
        "schema (<schema>_demo, recreated each run) and prints a funnel.",
    )
    p.add_argument(
        "--leads",
        type=LEADS,
        default=300,
        help=f"number of leads, 1 to {MAX_LEADS:,} (default 300)",
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--direct",
        action="store_true",
        help="skip Kafka: ingest the generated lines straight into the store",
    )
    fmt(p)
    handles(p, demo)

    p = commands.add(
        "generate",
        help="write generated journeys as JSON Lines",
        description="Deterministic for a seed: the same seed gives the same file.",
    )
    p.add_argument(
        "--leads",
        type=LEADS,
        default=1000,
        help=f"number of leads, 1 to {MAX_LEADS:,} (default 1000)",
    )
    p.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed, the same file (default 7)"
    )
    p.add_argument(
        "--days",
        type=int_from(1, MAX_DAYS, " (ten years)"),
        default=150,
        help=f"span of first touches in days, 1 to {MAX_DAYS:,} (default 150)",
    )
    p.add_argument(
        "--identity",
        type=share,
        default=0.0,
        metavar="SHARE",
        help="share of journeys (0..1) told under several keys: a cookie linked at the form "
        "fill, or a duplicate lead merged later (docs/identity.md); default 0",
    )
    accounts = p.add_argument_group(
        "accounts (docs/accounts.md)",
        "CRM accounts (`account.updated`) for the leads' companies, with several people each. "
        "Each company's accounts share its name (Acme Inc, Acme LLC, ... all normalise to "
        "'acme'), so a lead matched by company name alone is ambiguous and the tie-breakers "
        "(target tier, most leads, latest activity) decide; `lead explain KEY` shows which "
        "rule matched and why. Example: generate --leads 2000 --accounts 60 --free-mail 0.2",
    )
    accounts.add_argument(
        "--accounts",
        type=int_from(0, MAX_ACCOUNTS, " (the issue's scale check)"),
        metavar="N",
        help=f"exactly N accounts, spread over the {len(generator.COMPANY)} companies "
        f"({len(generator.COMPANY) + 1}: {generator.COMPANY[0]} has 2), each "
        "company's leads moved onto its accounts' e-mail domains (more accounts than "
        "companies: several people per "
        "account on several same-name accounts); an account no lead writes from is still "
        f"sent. 0 to {MAX_ACCOUNTS:,}; 0: no accounts (the same journeys, for a "
        "without-accounts baseline). Default: "
        "one account per company domain the leads use (up to 6 per company)",
    )
    accounts.add_argument(
        "--free-mail",
        type=share,
        default=generator.FREE_MAIL,
        metavar="SHARE",
        help="share of an account's leads writing from gmail.com with only their company "
        "name to match on (never matched by domain: by name, or not at all); "
        f"default {generator.FREE_MAIL}",
    )
    accounts.add_argument(
        "--naming",
        type=share,
        default=generator.NAMING,
        metavar="SHARE",
        help="share of an account's leads naming it (CloudEvents attribute `account`: the "
        f"`explicit` rule, before domain and name); default {generator.NAMING}",
    )
    p.add_argument("-o", "--output", type=output_file, help="file to write (default stdout)")
    handles(p, generate)


#: the most accounts `generate --accounts` makes (the issue's scale check: 100,000)
MAX_ACCOUNTS = 100_000
#: the most leads `generate`/`demo --leads` make: the scale check's 1,000,000 ten times
#: over (about 11 events a lead); more is a typo that would fill memory and disk
MAX_LEADS = 10_000_000
#: the longest span of first touches (`generate --days`): ten years
MAX_DAYS = 3_650
LEADS = int_from(1, MAX_LEADS, " (a bound: more would fill memory and disk)")


def _count_table(
    counts: dict[str, Any], projected: int, where: str, schema: str | None = None
) -> str:
    rows = [{"what": k, "count": v} for k, v in counts.items() if isinstance(v, int)]
    rows.append({"what": "projected", "count": projected})
    text = render("table", rows, columns=["what", "count"])
    rejected = counts.get("rejected") or counts.get("dead_lettered") or counts.get("conflicts")
    see = (
        f"; after the demo too: LEADENGINE_DATABASE_SCHEMA={schema} leadengine deadletters list"
        if schema
        else ""
    )
    return text + ("\n\n" + prose(f"rejected records are kept in {where}{see}") if rejected else "")


BAD_DEMO_LINES = (
    b'{"specversion": "1.0", "id": "bad-1", "type": "touch.page_viewed"',
    b'{"specversion": "1.0", "id": "bad-2", "source": "demo", "type": "touch.teleported", '
    b'"subject": "crm-x", "time": "2026-02-01T10:00:00Z", "data": {}}',
    b'{"specversion": "1.0", "id": "bad-3", "source": "demo", "type": "touch.page_viewed", '
    b'"subject": "crm-x", "time": "yesterday", "data": {"channel": "web"}}',
)


def demo(args: argparse.Namespace) -> int:
    settings = get_settings()
    configure_logging(settings.log_format, "WARNING")  # the demo prints its own summary
    schema = f"{settings.database_schema}_demo"
    database = dbmod.resolve(settings).with_schema(schema)
    dbmod.drop_schema(database)
    events = generator.generate(args.leads, args.seed)
    lines = [line.encode() for line in generator.lines(events)] + list(BAD_DEMO_LINES)
    demo_settings = settings.model_copy(update={"database_schema": schema})
    with open_runtime(demo_settings, database=database) as rt:
        if args.direct:
            report = ingest_with_progress(
                rt, iter(lines), f"demo:seed={args.seed}", len(lines)
            ).as_dict()
            where = f"{schema}.dead_letters"
        else:
            from engine.cli.commands.demo_kafka import demo_through_kafka

            report, where = demo_through_kafka(rt, demo_settings, lines)
        projected = project_with_progress(rt)
        funnel = queries.funnel(rt.db)
        routing = queries.routing(rt.db)
    if args.format == "json":
        print(
            to_json(
                {"ingest": report, "projected": projected, "funnel": funnel, "routing": routing}
            )
        )
        return 0
    path = "direct" if args.direct else "through Kafka"
    print(f"leadengine demo: {args.leads} leads, seed {args.seed}, {path}, schema {schema}\n")
    print(_count_table(report, projected, where, schema))
    print()
    print(funnel_text(funnel))
    if routing:
        print()
        print(render("table", routing, title="Owners: routed by the engine, waiting, manual"))
    print(
        f"\nnext (with LEADENGINE_DATABASE_SCHEMA={schema}):\n"
        "  leadengine lead history crm-0000001\n"
        "  leadengine lead explain crm-0000001\n"
        "  leadengine report sla --occurred-by 2026-03-02T12:00:00Z\n"
        "  leadengine report funnel --occurred-by 2026-03-02T12:00:00Z\n"
        "--occurred-by T: what had happened by T; --as-of T: what the engine had recorded by T\n"
        "(the demo recorded everything just now; docs/reports.md#flags-and-their-clocks)"
    )
    return 0


def generate(args: argparse.Namespace) -> int:
    free_mail = getattr(args, "free_mail", generator.FREE_MAIL)
    naming = getattr(args, "naming", generator.NAMING)
    if free_mail + naming > 1:
        raise LeadEngineError(
            f"--free-mail {free_mail} and --naming {naming}: they are shares of the same "
            "leads, so they add up to at most 1"
        )
    count = getattr(args, "accounts", None)
    events = generator.generate(
        args.leads,
        args.seed,
        span_days=args.days,
        identity=getattr(args, "identity", 0.0),
        accounts=True if count is None else count,
        free_mail=free_mail,
        naming=naming,
    )
    out = args.output.open("w", encoding="utf-8") if args.output else sys.stdout
    try:
        out.writelines(generator.lines(events))
    finally:
        if args.output:
            out.close()
    if args.output:
        print(
            f"wrote {len(events):,} events for {args.leads:,} leads to {args.output}",
            file=sys.stderr,
        )
    return 0
