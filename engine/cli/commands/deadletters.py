"""`leadengine deadletters replay | purge`: re-send kept records after a fix, or drop them.

Both write one audit line to the log (who, what, how many; never a record's bytes or personal
data). Exit codes: 0 done; 1 done but some records are still refused (or an --id has no row);
2 could not run.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from typing import Any

from engine.cli.args import BOOTSTRAP_HELP, Commands, Subparsers, fmt, handles, positive_int
from engine.cli.commands.leads import moment_arg
from engine.cli.commands.project import project_with_progress
from engine.cli.output import render, to_json
from engine.cli.progress import Progress
from engine.domain.errors import LeadEngineError
from engine.logs import get_logger
from engine.runtime import open_runtime
from engine.services.deadletter_replay import dry_run, replay
from engine.settings import get_settings

log = get_logger("leadengine.audit")


def register(commands: Commands) -> None:
    dl = commands.group(
        "deadletters", help="rejected input, kept with its reason", dest="dl_command"
    )
    p = dl.add_parser("list", help="the latest rejected records")
    p.add_argument("--limit", type=positive_int, default=20, help="records listed (default 20)")
    fmt(p)
    handles(p, deadletters_list)
    _deadletter_parsers(dl)


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


def _ids(args: argparse.Namespace) -> list[int] | None:
    """The --id values (None for --all), each checked to be a row id."""
    if args.all:
        return None
    bad = [i for i in args.ids if i < 1]
    if bad:
        raise LeadEngineError(
            f"--id {bad[0]}: expected a dead-letter id (1 or more, as `deadletters list` shows)"
        )
    return sorted(set(args.ids))


def _before(text: str) -> datetime:
    moment = moment_arg(text, "--before")
    assert moment is not None
    return moment


def _print(fmt: str, doc: dict[str, Any], title: str) -> None:
    if fmt == "json":
        print(to_json(doc))
        return
    rows = [{"what": k, "count": v} for k, v in doc.items() if isinstance(v, int)]
    print(render(fmt, rows, columns=["what", "count"], title=title))
    missing = doc.get("missing_ids")
    if missing and fmt == "table":
        print(f"\nno dead letter with id {', '.join(map(str, missing))}", file=sys.stderr)


def replay_command(args: argparse.Namespace) -> int:
    if args.kafka:
        return _replay_topic(args)
    if args.from_start or args.topic or args.bootstrap:
        raise LeadEngineError("--from-start, --topic and --bootstrap go with --kafka")
    ids = _ids(args)
    with open_runtime(create=False) as rt:
        max_bytes, size = rt.settings.max_event_bytes, rt.settings.batch_size
        if args.dry_run:
            unknown = rt.app.rules.contract.unknown_fields
            plan = dry_run(
                rt.deadletters, ids, max_bytes=max_bytes, batch_size=size, unknown_fields=unknown
            )
            doc: dict[str, Any] = plan.as_dict()
            refused, missing = plan.still_invalid, plan.missing
        else:
            bar = Progress("replay", rt.deadletters.count() if ids is None else len(ids))
            report = replay(
                rt.app,
                rt.deadletters,
                ids,
                max_bytes=max_bytes,
                batch_size=size,
                progress=lambda r: bar.update(r.selected),
            )
            bar.done()
            doc = report.as_dict()
            if report.resolved and not args.no_project:
                doc["projected"] = project_with_progress(rt)
            refused, missing = report.still_rejected, report.missing
    log.info(  # the audit line: who, what, how many; never the records themselves
        "dead letters replayed",
        source="table",
        selection="all" if ids is None else "ids",
        ids_requested=None if ids is None else len(ids),
        dry_run=args.dry_run,
        by=_who(),
        **{k: v for k, v in doc.items() if isinstance(v, int)},
    )
    title = "replay (dry run: nothing changed)" if args.dry_run else "replay"
    _print(args.format, doc, title)
    if refused and args.format == "table":
        print(
            "\nrecords that fail the contract would stay kept (see deadletters list)"
            if args.dry_run
            else "\nrecords still refused stay kept, with their new reason: deadletters list"
        )
    return 1 if refused or missing else 0


def _replay_topic(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from engine.cli.commands.streaming import bootstrap_of, kafka_settings
    from engine.consumers.dlq_replay import replay_topic

    if not args.all:
        raise LeadEngineError(
            "--id selects rows of the dead-letter table; with --kafka use --all "
            "(every dead letter past the stored replay position)"
        )
    settings = kafka_settings(args)
    bootstrap = bootstrap_of(args, settings)
    with open_runtime(settings, create=False) as rt:
        bar = Progress("replay")
        try:
            report = replay_topic(
                rt.app,
                settings,
                bootstrap,
                dry_run=args.dry_run,
                from_start=args.from_start,
                progress=lambda r: bar.update(r.read),
            )
        except KafkaError as exc:
            raise LeadEngineError(
                f"replay of {settings.dlq_topic} via {bootstrap} failed "
                f"({type(exc).__name__}: {exc}); what was acknowledged has its position "
                "stored: run it again to continue"
            ) from exc
        finally:
            bar.done()
    doc = report.as_dict()
    log.info(
        "dead letters replayed",
        source="topic",
        selection="from start" if args.from_start else "past stored position",
        dry_run=args.dry_run,
        by=_who(),
        **doc,
    )
    _print(args.format, doc, "replay (dry run: nothing sent)" if args.dry_run else "replay")
    if report.sent and not args.dry_run and args.format == "table":
        print(f"\nsent to {report.topic}: `leadengine consume` records them")
    return 1 if report.still_invalid else 0


def purge_command(args: argparse.Namespace) -> int:
    ids = None if args.all or args.before else _ids(args)
    before = _before(args.before) if args.before else None
    settings = get_settings()
    with open_runtime(settings, create=False) as rt:
        doomed = rt.deadletters.matching(ids, before=before)
        deleted = 0 if args.dry_run else rt.deadletters.delete(doomed)
    missing = sorted(set(ids) - set(doomed)) if ids is not None else []
    log.info(
        "dead letters purged",
        selection="all" if args.all else ("before" if before else "ids"),
        before=before.isoformat() if before else None,
        ids_requested=None if ids is None else len(ids),
        matched=len(doomed),
        deleted=deleted,
        dry_run=args.dry_run,
        by=_who(),
    )
    doc: dict[str, Any] = {"matched": len(doomed), "deleted": deleted, "missing_ids": missing}
    _print(args.format, doc, "purge (dry run: nothing deleted)" if args.dry_run else "purge")
    return 1 if missing else 0


REPLAY_EPILOG = """\
examples:
  leadengine deadletters list                      ids, origins and reasons
  leadengine deadletters replay --id 12 13 --dry-run   what would pass now; nothing changes
  leadengine deadletters replay --all              after fixing the rules or the contract
  leadengine deadletters replay --kafka --all      re-send <topic>.dlq to <topic>

exit codes: 0 done; 1 done, but some records are still refused (kept, with the new reason) or
an --id has no row; 2 could not run.
"""


def _ids_or(p: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
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


def _deadletter_parsers(dl: Subparsers) -> None:
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
    fmt(p)
    handles(p, replay_command)

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
    fmt(p)
    handles(p, purge_command)


def deadletters_list(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        rows = rt.deadletters.latest(args.limit)
    print(render(args.format, rows, columns=["id", "origin", "event_id", "field", "error"]))
    return 0
