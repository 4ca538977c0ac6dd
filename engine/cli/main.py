"""The `leadengine` command line: argument parsing and dispatch only, no business rules.

Each module of engine/cli/commands registers its own subcommands and their handlers; the order
of COMMANDS is the order `leadengine --help` lists them in.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from engine import __version__
from engine.cli import failures, output
from engine.cli.args import Commands, Handler, Parser

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

EXIT_CODES = """\
exit codes (every command):
  0  done
  1  done, but something was rejected or is unhealthy (ingest/publish/consume rejects,
     status --check over --max-lag, verify finds a broken link, schemas export --check)
  2  could not run: a setting, connection, file or argument; one line says which and why
"""

#: The top-level commands in the order --help lists them: name, one-line help, and the modules of
#: engine/cli/commands that register it (each module's `register(commands)` adds its parsers).
#: Only the invoked command's modules are imported: importing them all took seconds (they pull
#: in psycopg, kafka, the domain); tests/unit/test_cli_lazy.py checks this table against them.
COMMANDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("demo", "generate realistic journeys, ingest, project, summarise", ("demo",)),
    ("generate", "write generated journeys as JSON Lines", ("demo",)),
    ("ingest", "ingest JSON Lines of CloudEvents from a file or stdin", ("ingest",)),
    ("consume", "consume the Kafka topic into the store (exactly-once effects)", ("streaming",)),
    ("publish", "send JSON Lines of CloudEvents to the Kafka topic", ("streaming",)),
    ("status", "stored Kafka positions, lag per partition, projections", ("status",)),
    (
        "relay",
        "publish the engine's decisions (MQL, routing, stage, anomaly, SLA, identity, erasure) "
        "to Kafka",
        ("relay",),
    ),
    (
        "timers",
        "record SLA alerts (at risk, breached) as their moments pass; a service",
        ("relay",),
    ),
    ("project", "bring the read model up to date with the log", ("project",)),
    ("projections", "the read model's projections: list, rebuild, retry", ("project",)),
    ("lead", "one lead: show, history, explain", ("leads",)),
    (
        "report",
        "reports over the read model",
        ("reporting", "identity", "duplicates", "accounts", "qualify"),
    ),
    ("duplicates", "accept or dismiss an open duplicate suggestion", ("duplicates",)),
    ("account", "one account: show, explain, history", ("accounts",)),
    ("whatif", "replay the whole history under other rules; print what would change", ("qualify",)),
    ("schemas", "JSON Schemas of the event contract", ("schemas",)),
    ("rules", "rules files", ("schemas",)),
    ("deadletters", "rejected input, kept with its reason", ("deadletters",)),
    (
        "verify",
        "recompute the hash chains: exit 1 and the first broken link if anything changed",
        ("audit",),
    ),
    (
        "forget",
        "right to erasure: shred a lead's key so its personal data is gone for good",
        ("audit",),
    ),
    (
        "anchor",
        "hash every chain link so far into an anchor (run daily; keep the file elsewhere)",
        ("audit",),
    ),
    ("db", "database administration", ("admin",)),
)


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"engine.cli.commands.{name}")


def invoked(argv: Sequence[str]) -> str | None:
    """The command `argv` names: its first word that is not an option (the top-level options,
    -h and --version, take no value); None when there is none."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command listed with its one-line help, and the full parsers
    of the command `argv` invokes only (of every command when `argv` is None)."""
    parser = Parser(
        prog="leadengine",
        description="Event-sourced lead lifecycle engine.",
        epilog=EPILOG + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leadengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if argv is None else invoked(argv)
    commands = Commands(sub, only=None if argv is None else wanted or "")
    registered: set[str] = set()
    for name, help, modules in COMMANDS:
        if commands.only is not None and name != commands.only:
            sub.add_parser(name, help=help)  # listed, never parsed into
            continue
        for module in modules:
            if module not in registered:
                registered.add(module)
                command_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(words).parse_args(words)
    try:
        from engine.logs import configure_logging
        from engine.settings import get_settings

        output.configure(wide=getattr(args, "wide", False))
        settings = get_settings()
        configure_logging(settings.log_format, settings.log_level)
        handler: Handler = args.handler
        return handler(args)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the one error path: one line, exit 2, never a traceback
        print(f"leadengine: {failures.report(exc)}", file=sys.stderr)
        return failures.FAILED


if __name__ == "__main__":
    raise SystemExit(main())
