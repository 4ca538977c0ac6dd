"""The `leadengine` command line: argument parsing and dispatch only, no business rules.

Each module of engine/cli/commands registers its own subcommands and their handlers; the order
of COMMANDS is the order `leadengine --help` lists them in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.cli import failures, output
from engine.cli.args import Commands, Handler, Parser
from engine.cli.commands import (
    accounts,
    admin,
    audit,
    deadletters,
    demo,
    duplicates,
    identity,
    ingest,
    leads,
    project,
    qualify,
    relay,
    reporting,
    schemas,
    status,
    streaming,
)
from engine.logs import configure_logging
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

EXIT_CODES = """\
exit codes (every command):
  0  done
  1  done, but something was rejected or is unhealthy (ingest/publish/consume rejects,
     status --check over --max-lag, verify finds a broken link, schemas export --check)
  2  could not run: a setting, connection, file or argument; one line says which and why
"""

#: each registers its own subcommands (`register(commands)`), in the order --help lists them
COMMANDS = (
    demo,  # demo, generate
    ingest,  # ingest
    streaming,  # consume, publish
    status,  # status
    relay,  # relay, timers
    project,  # project, projections list | retry | rebuild
    leads,  # lead show | history | explain
    reporting,  # report funnel | attribution | kpis | html
    identity,  # report identity
    duplicates,  # report duplicates, duplicates accept | dismiss
    accounts,  # account show | explain, report accounts
    qualify,  # report sla, whatif
    schemas,  # schemas export, rules check | show
    deadletters,  # deadletters list | replay | purge
    audit,  # lead export, verify, forget, anchor
    admin,  # db init | migrate | grant-reporting
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="leadengine",
        description="Event-sourced lead lifecycle engine.",
        epilog=EPILOG + "\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"leadengine {__version__}")
    commands = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for module in COMMANDS:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
