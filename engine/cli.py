"""The `leadengine` command line: argument parsing and dispatch only, no business rules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from engine import __version__, failures, output
from engine.logs import configure_logging
from engine.output import FORMATS
from engine.settings import get_settings

EPILOG = """\
examples:
  leadengine demo --leads 500                 generate journeys, ingest, project, show a funnel
  leadengine generate --leads 1000 -o ev.jsonl
  leadengine ingest ev.jsonl                   accepted / duplicate / rejected counts
  leadengine lead history crm-0000042          every event, with score and stage after each
  leadengine report funnel --format json
  leadengine lead explain crm-0000042 --model enterprise
  leadengine report sla --occurred-by 2026-03-03T09:00:00Z
  leadengine report attribution --model all --by campaign
  leadengine report kpis --from 2026-01-01 --to 2026-04-01
  leadengine report html report.html          charts in one self-contained page
  leadengine whatif --rules stricter.yaml      what would change under other rules
  leadengine projections rebuild leads        rebuild a read model beside the live one, switch
  leadengine projections retry                bring back the leads a projection parked

environment:
  LEADENGINE_DATABASE_URL   PostgreSQL URL (unset: embedded server under LEADENGINE_HOME)
  LEADENGINE_HOME           embedded server data directory (default ./.leadengine)
  LEADENGINE_RULES_FILE     rules YAML (default: the shipped rules; see `rules show`)
  LEADENGINE_LOG_FORMAT     console | json
  LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, LEADENGINE_KAFKA_TOPIC (lead-events),
  LEADENGINE_KAFKA_GROUP (leadengine), LEADENGINE_KAFKA_SASL_* / _SSL_CAFILE
"""


BOOTSTRAP_HELP = "host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"

EXIT_CODES = """\
exit codes (every command):
  0  done
  1  done, but something was rejected or is unhealthy (ingest/publish/consume rejects,
     status --check over --max-lag, verify finds a broken link, schemas export --check)
  2  could not run: a setting, connection, file or argument; one line says which and why
"""


class Parser(argparse.ArgumentParser):
    """Argument mistakes end like every other failure: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(failures.FAILED, f"{self.prog}: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    return number


def output_file(text: str) -> Path:
    """A file to write: its directory must exist (checked before any work is done)."""
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: directory {path.parent} does not exist; create it first"
        )
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: it is a directory")
    return path


def _fmt(p: argparse.ArgumentParser, default: str = "table") -> None:
    p.add_argument(
        "--format", choices=FORMATS, default=default, help=f"output format (default {default})"
    )
    p.add_argument(
        "--wide",
        action="store_true",
        help="tables: every column at full width (default: fit the terminal, 100 columns "
        "when not a terminal; columns that do not fit are named below the table)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="leadengine",
        description="Event-sourced lead lifecycle engine.",
        epilog=EPILOG + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leadengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="generate realistic journeys, ingest, project, summarise",
        description="Runs the whole engine on generated journeys in a separate "
        "schema (<schema>_demo, recreated each run) and prints a funnel.",
    )
    p.add_argument("--leads", type=positive_int, default=300, help="number of leads (default 300)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--direct",
        action="store_true",
        help="skip Kafka: ingest the generated lines straight into the store",
    )
    _fmt(p)

    p = sub.add_parser(
        "generate",
        help="write generated journeys as JSON Lines",
        description="Deterministic for a seed: the same seed gives the same file.",
    )
    p.add_argument(
        "--leads", type=positive_int, default=1000, help="number of leads (default 1000)"
    )
    p.add_argument(
        "--seed", type=int, default=7, help="random seed: the same seed, the same file (default 7)"
    )
    p.add_argument("--days", type=positive_int, default=150, help="span of first touches in days")
    p.add_argument("-o", "--output", type=output_file, help="file to write (default stdout)")

    p = sub.add_parser(
        "ingest",
        help="ingest JSON Lines of CloudEvents from a file or stdin",
        description="Valid events are recorded (the same source and id again is a no-op; "
        "with other content, a conflict); invalid lines and conflicts are kept in the "
        "dead-letter table with the reason. "
        "Projections are brought up to date afterwards unless --no-project.",
    )
    p.add_argument("file", help="path to a .jsonl file, or - for stdin")
    p.add_argument("--no-project", action="store_true", help="only record, do not project")
    _fmt(p)

    p = sub.add_parser(
        "consume",
        help="consume the Kafka topic into the store (exactly-once effects)",
        description="Joins the consumer group, seeks each assigned partition to the position "
        "stored with the events, records batches with their positions in one transaction, "
        "sends invalid records to the dead-letter topic (<topic>.dlq). SIGTERM/SIGINT finish "
        "the batch in hand and exit 0.",
    )
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit when every assigned partition is read to its end",
    )
    p.add_argument("--topic", help="topic (default LEADENGINE_KAFKA_TOPIC or lead-events)")
    p.add_argument("--group", help="consumer group (default LEADENGINE_KAFKA_GROUP)")
    p.add_argument(
        "--bootstrap", help="host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"
    )
    p.add_argument("--no-project", action="store_true", help="do not project afterwards")
    _fmt(p)

    p = sub.add_parser(
        "publish",
        help="send JSON Lines of CloudEvents to the Kafka topic",
        description="Key = subject (the lead key). Lines are validated first; "
        "invalid ones are reported with their line number and not sent "
        "(exit 1).",
    )
    p.add_argument("file", help="path to a .jsonl file, or - for stdin")
    p.add_argument("--no-validate", action="store_true", help="send without validating")
    p.add_argument("--topic", help="topic (default LEADENGINE_KAFKA_TOPIC or lead-events)")
    p.add_argument(
        "--bootstrap", help="host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"
    )
    _fmt(p)

    p = sub.add_parser(
        "status",
        help="stored Kafka positions, lag per partition, projections",
        description="For each partition of the topic: the position stored with the events "
        "(the truth the consumer resumes from), the broker's end offset and the lag; then each "
        "projection's position against the head of the event log. Needs "
        "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS for the Kafka part.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="for probes: exit 1 (with the reason) if a projection has parked leads or a lag "
        "exceeds --max-lag, 2 (one line) if the database or the configured broker is "
        "unreachable; print nothing else",
    )
    p.add_argument(
        "--allow-parked",
        action="store_true",
        help="with --check: parked leads do not fail it (for liveness probes: a restart "
        "cannot fix them; see `projections retry`)",
    )
    p.add_argument("--max-lag", type=int, metavar="N", help="with --check: most lag allowed")
    _fmt(p)

    from engine.commands.relay import add_parser as add_relay
    from engine.commands.relay import add_timers_parser

    _fmt(add_relay(sub))
    _fmt(add_timers_parser(sub))

    p = sub.add_parser("project", help="bring the read model up to date with the log")
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        default=True,
        help="stop when caught up (the default)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="run as a service: keep projecting new events until SIGTERM (finishes the batch)",
    )
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="run only these projections: leads, touchpoints, history, costs (see "
        "`leadengine projections list`); the others keep their positions",
    )
    _fmt(p)

    proj = sub.add_parser(
        "projections", help="the read model's projections: list, rebuild, retry"
    ).add_subparsers(dest="projections_command", required=True, metavar="SUBCOMMAND")
    p = proj.add_parser("list", help="each projection, its tables, position, lag, parked leads")
    _fmt(p)
    p = proj.add_parser(
        "retry",
        help="re-fold the leads a projection parked; unpark those that now succeed",
        description="A lead a projection could not fold or write is parked (with the reason) "
        "and its later events are skipped by that projection, so the rest moves on. After "
        "fixing the cause (code, rules, data in the database), retry re-folds each parked lead "
        "from its whole stream under the current code and rules, writes its rows and unparks "
        "it; those that fail again stay parked with the new reason. Exit 1 if any stay parked.",
    )
    p.add_argument("name", nargs="?", help="leads | touchpoints | history | costs (default all)")
    p.add_argument("--lead", metavar="KEY", help="only this lead")
    _fmt(p)
    p = proj.add_parser(
        "rebuild",
        help="rebuild a projection beside the live one, then switch in one transaction",
        description="Builds a new version of the projection's tables in <schema>_rebuild from "
        "the whole event log under the current rules and code (progress bar with events/s and "
        "ETA), adds their indexes, catches up with events that arrived meanwhile, then, in one "
        "transaction, projects the last few events, swaps the tables in under their names, "
        "points the views over them at the new tables in place (views built on the read "
        "contract, in any schema, stay) and moves the projection's position. Readers see the old "
        "tables until the commit and the new ones after it; a running `project --follow` "
        "carries on from the new position. Safe to interrupt: the live tables are untouched "
        "until the switch, and the next rebuild starts over. Run it after changing the rules "
        "or upgrading leadengine.",
    )
    p.add_argument("name", help="leads | touchpoints | history | costs")
    p.add_argument(
        "--batch-size",
        type=int,
        default=20_000,
        metavar="N",
        help="notifications read per page during the load (default 20000)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="load with N processes, each the leads of its share of the ids (default: one "
        "per CPU up to 4 when the log has 50,000 events or more, else 1)",
    )
    _fmt(p)

    lead = sub.add_parser("lead", help="one lead: show, history, explain").add_subparsers(
        dest="lead_command", required=True, metavar="SUBCOMMAND"
    )
    p = lead.add_parser("show", help="current stage, owner, score and profile of a lead")
    p.add_argument("key", help="the lead's key upstream (CloudEvent subject)")
    _clock_args(p)
    _fmt(p)
    p = lead.add_parser("history", help="every event in order with score and stage after each")
    p.add_argument("key", help="the lead's key upstream (CloudEvent subject)")
    _clock_args(p)
    _fmt(p)
    p = lead.add_parser(
        "export",
        help="one JSON document for auditors: every event, decision, rule version, chain hash",
    )
    p.add_argument("key", help="the lead's key upstream (CloudEvent subject)")
    p.add_argument("-o", "--output", type=output_file, help="file to write (default stdout)")
    p = lead.add_parser(
        "explain",
        help="the score broken down by rule and event, with decay",
        description="Scored at T with --as-of T or --occurred-by T (see the clocks below), "
        "else at the lead's latest fact with everything recorded.",
        epilog=CLOCKS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("key", help="the lead's key upstream (CloudEvent subject)")
    _clock_args(p)
    p.add_argument("--model", help="scoring model name (default: the primary model)")
    _fmt(p)

    account = sub.add_parser("account", help="one account: show, explain").add_subparsers(
        dest="account_command", required=True, metavar="SUBCOMMAND"
    )
    p = account.add_parser("show", help="an account's firmographics, score, MQA and leads")
    p.add_argument("key", help="the account's id (the subject of its account.updated events)")
    _fmt(p)
    p = account.add_parser(
        "explain", help="an account's score point by point, its MQA decision, how leads matched"
    )
    p.add_argument("key", help="the account's id (the subject of its account.updated events)")
    _fmt(p)

    report = sub.add_parser("report", help="reports over the read model").add_subparsers(
        dest="report_command", required=True, metavar="REPORT"
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
    _window_args(p, currency=False)
    _fmt(p)
    _report_parsers(report)
    p = report.add_parser(
        "accounts",
        help="accounts: MQAs, how leads were matched, score distribution, top ones",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The accounts as the read model holds them now. --from/--to count the "
        "MQAs decided in the window; --as-of and --occurred-by are refused (account tables "
        "keep current state only, docs/accounts.md).",
        epilog=WINDOW_HELP,
    )
    _window_args(p, currency=False)
    p.add_argument("--limit", type=positive_int, default=30, help="accounts listed (default 30)")
    _fmt(p)
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
    _window_args(p, currency=False)
    p.add_argument(
        "--limit", type=positive_int, default=30, help="leads listed in the table (default 30)"
    )
    _fmt(p)

    p = sub.add_parser(
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
    _fmt(p)

    schemas = sub.add_parser("schemas", help="JSON Schemas of the event contract").add_subparsers(
        dest="schemas_command", required=True, metavar="SUBCOMMAND"
    )
    p = schemas.add_parser("export", help="write one JSON Schema file per event type")
    p.add_argument("dir", type=Path, help="output directory, e.g. schemas/")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from the models",
    )

    rules = sub.add_parser("rules", help="rules files").add_subparsers(
        dest="rules_command", required=True, metavar="SUBCOMMAND"
    )
    p = rules.add_parser("check", help="validate a rules file, errors with line numbers")
    p.add_argument("file", type=Path, help="the rules YAML to check")
    rules.add_parser("show", help="print the shipped default rules (a commented template)")

    dl = sub.add_parser("deadletters", help="rejected input, kept with its reason").add_subparsers(
        dest="dl_command", required=True, metavar="SUBCOMMAND"
    )
    p = dl.add_parser("list", help="the latest rejected records")
    p.add_argument("--limit", type=positive_int, default=20, help="records listed (default 20)")
    _fmt(p)
    _deadletter_parsers(dl)

    p = sub.add_parser(
        "verify",
        help="recompute the hash chains: exit 1 and the first broken link if anything changed",
        description="Every stored event is hashed into a chain per aggregate in the same "
        "transaction. verify recomputes each chain from the stored bytes and checks the "
        "anchors (table chain_anchors, and --anchors-file if given). Edited, deleted, "
        "reordered or inserted events are reported with the aggregate and version.",
    )
    p.add_argument("key", nargs="?", help="one lead (default: with --all, everything)")
    p.add_argument("--all", action="store_true", help="every aggregate (the default)")
    p.add_argument("--anchors-file", type=Path, help="also check anchors kept in this file")
    _fmt(p)
    p = sub.add_parser(
        "forget",
        help="right to erasure: shred a lead's key so its personal data is gone for good",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Personal fields (email, name, phone, call notes) are stored sealed with a "
        "key per lead. forget destroys that key, records an Erased event (who, when, why), "
        "deletes the dead letters that carry the person's data and refreshes the lead's rows. "
        "History, scores, stages, attribution and KPIs replay exactly as before; the personal "
        "data cannot be recovered. Later events for the lead follow rules privacy.after_erasure "
        "(default: recorded without personal data). Running it again is safe.",
        epilog="example:\n  leadengine forget crm-0000042 --reason 'GDPR request #1234' "
        "--by dpo@example.com\n\nThe reason and the operator are kept in the history: "
        "write a ticket number, never the person's name.",
    )
    p.add_argument("key", help="the lead's key upstream")
    p.add_argument("--reason", required=True, help="why (a ticket or request id)")
    p.add_argument("--by", help="who asked for it (default: the OS user)")
    _fmt(p)
    p = sub.add_parser(
        "anchor",
        help="hash every chain link so far into an anchor (run daily; keep the file elsewhere)",
    )
    p.add_argument("--file", type=Path, help="also append the anchor to this JSON Lines file")

    db = sub.add_parser("db", help="database administration").add_subparsers(
        dest="db_command", required=True, metavar="SUBCOMMAND"
    )
    p = db.add_parser(
        "init",
        help="create the schema, tables, read-contract views and reader role (idempotent)",
        description="Versioned and idempotent: applies the migrations not yet applied, then "
        "creates the event store's tables, the views in <schema>_read and the role "
        "leadengine_reader (NOLOGIN; give reporting jobs login roles IN it). See "
        "docs/read-model.md.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be applied; change nothing"
    )
    p = db.add_parser(
        "migrate",
        help="upgrade an existing schema to this leadengine's version (same as init)",
        description="Processes refuse to start on a schema that is behind; run this first "
        "(e.g. as a one-shot job in a rolling upgrade). Each migration runs in its own "
        "transaction, recorded in <schema>.schema_migrations.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be applied; change nothing"
    )
    p = db.add_parser(
        "grant-reporting",
        help="give a reporting job's login the read contract and a schema of its own to write",
        description="Makes the existing login NAME a member of leadengine_reader (SELECT on the "
        "views in <schema>_read, nothing else) and gives it a schema named NAME that it owns "
        "(dbt's target: CREATE TABLE/VIEW there). See docs/read-model.md.",
    )
    p.add_argument("name", help="the job's login role (must exist, unless --print-sql)")
    p.add_argument(
        "--print-sql",
        action="store_true",
        help="print the SQL (creating the login if missing) for an administrator; change nothing",
    )
    return parser


CLOCKS_HELP = """\
clocks (docs/reports.md#flags-and-their-clocks): --as-of T = what the engine had recorded by T
(each stored event's own timestamp: what an auditor saw then); --occurred-by T = what had
happened by T (upstream `time`), as known now, late facts included. Pick one.
"""

WINDOW_HELP = (
    """\
windows: --from/--to cut on when things happened (the event's `time`). All take RFC 3339
timestamps or dates (UTC), e.g. --from 2026-01-01 --to 2026-04-01 --as-of 2026-04-02T09:00:00Z.
"""
    + CLOCKS_HELP
)

REPLAY_EPILOG = """\
examples:
  leadengine deadletters list                      ids, origins and reasons
  leadengine deadletters replay --id 12 13 --dry-run   what would pass now; nothing changes
  leadengine deadletters replay --all              after fixing the rules or the contract
  leadengine deadletters replay --kafka --all      re-send <topic>.dlq to <topic>

exit codes: 0 done; 1 done, but some records are still refused (kept, with the new reason) or
an --id has no row; 2 could not run.
"""


def _ids_or(p: argparse.ArgumentParser) -> Any:
    """The required choice of what a dead-letter command works on: --id ... or its siblings."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        dest="ids",
        type=int,
        nargs="+",
        action="extend",
        metavar="ID",
        help="dead-letter table ids (as `deadletters list` shows); repeatable",
    )
    return which


def _deadletter_parsers(dl: Any) -> None:
    p = dl.add_parser(
        "replay",
        help="record kept dead letters again after a fix (table, or the Kafka .dlq topic)",
        description="Table (default): each selected row's bytes go through the same parse and "
        "record path as `ingest`. A record that passes now is stored (or found already stored) "
        "and its row deleted; one refused again stays, bytes untouched, with the new reason. "
        "Projections are brought up to date afterwards. "
        "With --kafka: the dead-letter topic (<topic>.dlq) is read from the position a "
        "previous replay stored (kept in the database) to its end, and each record's original "
        "bytes, key and headers are re-published to <topic> for `consume` to record; records "
        "still failing the contract are counted and not sent. A record sent twice is stored "
        "once (its source and id). The .dlq topic is not changed: its retention is the "
        "broker's. Each run is written to the log as an audit line (who, what, how many).",
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = _ids_or(p)
    which.add_argument(
        "--all", action="store_true", help="every row of the table (with --kafka: the topic)"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing: count what would be retried and what fails the contract still "
        "(a conflict with a stored event shows only on a real replay)",
    )
    p.add_argument(
        "--kafka",
        action="store_true",
        help="replay the dead-letter topic <topic>.dlq into <topic> instead of the table",
    )
    p.add_argument(
        "--from-start",
        action="store_true",
        help="with --kafka: read the .dlq topic from its first record, not the stored position "
        "(records already stored are deduplicated)",
    )
    p.add_argument("--topic", help="with --kafka: topic (default LEADENGINE_KAFKA_TOPIC)")
    p.add_argument("--bootstrap", help="with --kafka: " + BOOTSTRAP_HELP)
    p.add_argument("--no-project", action="store_true", help="table: do not project afterwards")
    _fmt(p)

    p = dl.add_parser(
        "purge",
        help="delete kept dead letters from the table (by id, age, or all)",
        description="Deletes rows of the dead-letter table. Records in the Kafka dead-letter "
        "topic (<topic>.dlq) are not touched: their retention is the broker's (set "
        "retention.ms on the topic). Each run is written to the log as an audit line "
        "(who, what, how many). Exit 1 if an --id has no row.",
    )
    which = _ids_or(p)
    which.add_argument("--all", action="store_true", help="every row")
    which.add_argument(
        "--before",
        metavar="T",
        help="rows received before T (RFC 3339 timestamp or date, e.g. 2026-03-01)",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    _fmt(p)


#: One meaning per flag: every command that takes --as-of / --occurred-by uses these texts.
AS_OF_HELP = "what the engine had recorded by T (events stored by then; default: everything)"
OCCURRED_BY_HELP = "what had happened by T (upstream `time`, late facts included)"


def _clock_args(p: argparse.ArgumentParser) -> None:
    clocks = p.add_mutually_exclusive_group()
    clocks.add_argument("--as-of", metavar="T", help=AS_OF_HELP)
    clocks.add_argument("--occurred-by", metavar="T", help=OCCURRED_BY_HELP)


def _window_args(p: argparse.ArgumentParser, *, currency: bool = True) -> None:
    p.add_argument(
        "--from", dest="start", metavar="T", help="things that happened from T (inclusive)"
    )
    p.add_argument("--to", dest="end", metavar="T", help="things that happened before T")
    _clock_args(p)
    if currency:
        p.add_argument(
            "--currency",
            help="ISO 4217 code money is reported in (default: rules' money.reporting_currency); "
            "other currencies are converted with money.rates or left out and reported",
        )


def _report_parsers(report: Any) -> None:
    from engine.analytics.attribution import BY, MODELS
    from engine.analytics.report import SECTIONS

    fmt = argparse.RawDescriptionHelpFormatter
    p = report.add_parser(
        "attribution",
        help="touchpoint contribution under one or all attribution models",
        formatter_class=fmt,
        description="Credit for conversions (or revenue) by channel, campaign or content. A "
        "path is a lead's touches ordered by time, up to the moment it first reached the "
        "conversion stage. Credits of every model add up exactly to the conversions (revenue); "
        "conversions with no touch show as '(no touchpoint)'. Weights: rules `attribution`.",
        epilog="models: " + ", ".join(MODELS) + "\n\n" + WINDOW_HELP + "\nexamples:\n"
        "  leadengine report attribution --model all\n"
        "  leadengine report attribution --model markov --by campaign --value revenue\n"
        "  leadengine report attribution --conversion sql --from 2026-01-01 --format csv\n",
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
    _window_args(p)
    _fmt(p)

    p = report.add_parser(
        "kpis",
        help="funnel, time in stage, cycle, lead flow, follow-up, email, clusters, cost, ROI",
        formatter_class=fmt,
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
    _fmt(p)

    p = report.add_parser(
        "html",
        help="one self-contained HTML page with charts (funnel, attribution, flow, cost)",
        formatter_class=fmt,
        epilog=WINDOW_HELP + "\nexample:\n  leadengine report html report.html --from 2026-01-01\n",
    )
    p.add_argument("output", type=output_file, metavar="OUT.html", help="the page to write")
    _kpi_args(p, MODELS)


def _kpi_args(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    p.add_argument("--period", default="month", choices=("week", "month"), help="lead flow")
    p.add_argument(
        "--by",
        default="channel",
        choices=("channel", "campaign"),
        help="group sources, flow and money by (default channel)",
    )
    p.add_argument("--model", default="linear", choices=models, help="for ROI (default linear)")
    _window_args(p)


def _handler(args: argparse.Namespace) -> Callable[[argparse.Namespace], int]:
    from engine.commands import (
        accounts,
        audit,
        deadletters,
        leads,
        ops,
        qualify,
        relay,
        reporting,
        streaming,
    )

    table: dict[tuple[str, str | None], Callable[[argparse.Namespace], int]] = {
        ("demo", None): ops.demo,
        ("generate", None): ops.generate,
        ("ingest", None): ops.ingest,
        ("project", None): ops.project,
        ("projections", "list"): ops.projections_list,
        ("projections", "rebuild"): ops.projections_rebuild,
        ("projections", "retry"): ops.projections_retry,
        ("consume", None): streaming.consume,
        ("publish", None): streaming.publish,
        ("status", None): streaming.status,
        ("relay", None): relay.relay,
        ("timers", None): relay.timers,
        ("lead", "show"): leads.show,
        ("lead", "history"): leads.history,
        ("lead", "explain"): leads.explain,
        ("lead", "export"): audit.export,
        ("account", "show"): accounts.show,
        ("account", "explain"): accounts.explain,
        ("report", "accounts"): accounts.report,
        ("verify", None): audit.verify_command,
        ("anchor", None): audit.anchor_command,
        ("forget", None): audit.forget_command,
        ("report", "funnel"): ops.report_funnel,
        ("report", "sla"): qualify.report_sla,
        ("report", "attribution"): reporting.attribution,
        ("report", "kpis"): reporting.kpis,
        ("report", "html"): reporting.html,
        ("whatif", None): qualify.whatif,
        ("schemas", "export"): ops.schemas_export,
        ("rules", "check"): ops.rules_check,
        ("rules", "show"): ops.rules_show,
        ("deadletters", "list"): ops.deadletters_list,
        ("deadletters", "replay"): deadletters.replay_command,
        ("deadletters", "purge"): deadletters.purge_command,
        ("db", "init"): ops.db_init,
        ("db", "migrate"): ops.db_init,
        ("db", "grant-reporting"): ops.db_grant_reporting,
    }
    sub = next((getattr(args, a) for a in vars(args) if a.endswith("_command")), None)
    return table[(args.command, sub)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output.configure(wide=getattr(args, "wide", False))
        settings = get_settings()
        configure_logging(settings.log_format, settings.log_level)
        return _handler(args)(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one error path: one line, exit 2, never a traceback
        print(f"leadengine: {failures.report(exc)}", file=sys.stderr)
        return failures.FAILED


if __name__ == "__main__":
    raise SystemExit(main())
