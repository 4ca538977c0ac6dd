"""Commands that move data: demo, generate, ingest, project; and admin: schemas, rules, db."""

from __future__ import annotations

import argparse
import codecs
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from engine import db as dbmod
from engine import generator, reports
from engine.consumers.lines import LinesReport, ingest_lines
from engine.consumers.retry import retry_transient
from engine.contract import EVENT_TYPES, event_json_schema
from engine.errors import LeadEngineError
from engine.logs import configure_logging
from engine.output import prose, render, to_json
from engine.progress import Progress, count_lines
from engine.projections.projector import DESCRIPTIONS, PROJECTIONS, Projector, names
from engine.rules import load_rules
from engine.runtime import Runtime, open_runtime
from engine.settings import get_settings

# Compressed or archived input by mistake: refused whole, not stored as junk dead letters.
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def check_text(head: bytes, path: str) -> None:
    """Refuse input whose first bytes are not JSON Lines text (compressed, binary, not UTF-8)."""
    shown = "stdin" if path == "-" else path
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            raise LeadEngineError(
                f"{shown}: a {kind} file, not JSON Lines text; decompress it first "
                f"(e.g. {kind} -dc FILE | leadengine ingest -)"
            )
    if _mostly_binary(head):
        raise LeadEngineError(
            f"{shown}: binary data, not JSON Lines text (UTF-8, one CloudEvent per line); "
            "nothing was read"
        )


def _mostly_binary(head: bytes) -> bool:
    """Most lines of `head` hold NUL bytes or are not UTF-8: binary data, not text with a bad
    line or two (a bad line is the contract's business: refused with its reason and kept,
    nothing lost)."""
    lines = head.split(b"\n")
    bad = 0
    for i, line in enumerate(lines):
        try:
            codecs.getincrementaldecoder("utf-8")().decode(line, final=i < len(lines) - 1)
        except UnicodeDecodeError:
            bad += 1
        else:
            bad += b"\x00" in line
    return bad * 2 > len(lines)


def read_lines(path: str) -> Iterator[bytes]:
    """The lines of `path` (or stdin for `-`), refused at once if it is not text."""
    if path == "-":
        stream = cast(io.BufferedReader, sys.stdin.buffer)
        check_text(stream.peek(8192)[:8192], path)
        yield from stream
        return
    file = Path(path)
    if not file.is_file():
        raise LeadEngineError(f"cannot read {path}: no such file")
    with file.open("rb") as handle:
        check_text(handle.read(8192), path)
        handle.seek(0)
        yield from handle


def _ingest(
    rt: Runtime, lines: Any, origin: str, total: int | None = None, path: str | None = None
) -> LinesReport:
    bar = Progress("ingest", total)
    if bar.enabled and total is None and path is not None:
        bar.total = count_lines(path)  # a second read, only for a person watching
    report = ingest_lines(
        lines,
        origin=origin,
        app=rt.app,
        deadletters=rt.deadletters,
        batch_size=rt.settings.batch_size,
        max_bytes=rt.settings.max_event_bytes,
        progress=lambda r: bar.update(r.lines),
    )
    bar.done()
    return report


def project_with_progress(rt: Runtime, projector: Projector | None = None) -> int:
    projector = projector or rt.projector
    lag = projector.lag()
    bar = Progress("project", lag or None)
    done = projector.run(until_caught_up=True, progress=lambda n, _pos: bar.update(n))
    bar.done()
    return done


def _projector(rt: Runtime, only: str | None) -> Projector:
    """The runtime's projector (all projections), or one limited to `--only`."""
    if not only:
        return rt.projector
    try:
        return Projector(rt.app, rt.db, only=only, cache_size=rt.settings.cache_size)
    except ValueError as exc:
        raise LeadEngineError(f"--only: {exc}") from None


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


def _counts(fmt: str, report: LinesReport, projected: int | None, where: str) -> str:
    doc: dict[str, Any] = report.as_dict()
    if projected is not None:
        doc["projected"] = projected
    kept = report.rejected + report.conflicts
    doc["dead_letters"] = where if kept else None
    if fmt == "json":
        return to_json(doc)
    rows = [{"what": k, "count": v} for k, v in doc.items() if isinstance(v, int)]
    text = render(fmt, rows, columns=["what", "count"])
    if kept and fmt == "table":
        text += f"\n\nrejected lines are kept in {where} (see `leadengine deadletters list`)"
    return text


def ingest(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        origin = "stdin" if args.file == "-" else f"file:{args.file}"
        report = _ingest(rt, read_lines(args.file), origin, path=args.file)
        rt.app.clear_cache()  # the projector keeps its own: never hold both at once
        projected = None if args.no_project else project_with_progress(rt)
        print(_counts(args.format, report, projected, f"{rt.db.schema}.dead_letters"))
    return 1 if report.rejected else 0  # 1: done, but lines were rejected (as publish)


def project(args: argparse.Namespace) -> int:
    only = getattr(args, "only", None)
    if getattr(args, "follow", False):
        return _follow(only)
    with open_runtime() as rt:
        projector = _projector(rt, only)
        try:
            done = project_with_progress(rt, projector)
            positions = projector.positions()
        finally:
            projector.close()
        head = rt.app.recorder.max_notification_id() or 0
        rows = [
            {"projection": n, "position": at, "lag": max(0, head - at)}
            for n, at in positions.items()
        ]
        doc = {"projected": done, "projections": rows}
        if args.format == "json":
            print(to_json(doc))
        else:
            print(render(args.format, rows, title=f"projected {done:,} events"))
    return 0


def projections_list(args: argparse.Namespace) -> int:
    from engine.commands.streaming import projection_status

    with open_runtime() as rt:
        status = {row["name"]: row for row in projection_status(rt)}
    rows = [
        {
            "projection": name,
            "tables": ", ".join(tables),
            "what": DESCRIPTIONS[name],
            "position": status[name]["position"],
            "lag": status[name]["lag"],
            "parked": status[name]["parked"],
        }
        for name, tables in PROJECTIONS.items()
    ]
    print(to_json(rows) if args.format == "json" else render(args.format, rows))
    return 0


def projections_retry(args: argparse.Namespace) -> int:
    """Re-fold the parked leads; exit 1 if some stay parked."""
    from engine.projections.retry import retry

    try:
        names(args.name)
    except ValueError as exc:
        raise LeadEngineError(str(exc)) from None
    with open_runtime() as rt:
        report = retry(rt.app, rt.db, args.name, lead=args.lead)
    if args.format == "json":
        print(to_json(report.as_dict()))
    else:
        print(
            f"retried {report.retried} parked, {report.unparked} back, "
            f"{len(report.still_parked)} still parked"
        )
        if report.still_parked:
            print()
            print(
                render(
                    args.format,
                    report.still_parked,
                    columns=["projection", "lead_key", "position", "attempts", "reason"],
                )
            )
    return 1 if report.still_parked else 0


def projections_rebuild(args: argparse.Namespace) -> int:
    from engine.projections.rebuild import rebuild

    try:
        names(args.name)
    except ValueError as exc:
        raise LeadEngineError(str(exc)) from None
    if args.workers is not None and args.workers < 1:
        raise LeadEngineError("--workers: expected 1 or more")
    with open_runtime() as rt:
        bars: dict[str, Progress] = {}

        def progress(phase: str, done: int, total: int) -> None:
            bar = bars.get(phase)
            if bar is None:
                for other in bars.values():
                    other.done()
                bar = bars[phase] = Progress(f"rebuild {args.name} ({phase})", total or None)
            bar.total = total or None
            bar.update(done)

        report = rebuild(
            rt.app,
            rt.db,
            args.name,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=progress,
        )
        for bar in bars.values():
            bar.done()
    doc = report.as_dict()
    if args.format == "json":
        print(to_json(doc))
    else:
        rows = [
            {"what": "events loaded", "value": f"{report.events:,}"},
            {
                "what": "load",
                "value": f"{report.load_seconds:.1f} s, {report.events_per_second:,.0f} events/s",
            },
            {"what": "indexes", "value": f"{report.index_seconds:.1f} s"},
            {"what": "caught up afterwards", "value": f"{report.caught_up:,} events"},
            {"what": "switch (one transaction)", "value": f"{report.switch_seconds:.2f} s"},
            {"what": "live position", "value": f"{report.position:,}"},
            *({"what": f"rows in {t}", "value": f"{n:,}"} for t, n in report.rows.items()),
        ]
        print(render(args.format, rows, title=f"rebuilt projection {args.name}"))
    return 0


def _follow(only: str | None = None) -> int:
    """The projector as a service: follow the log until SIGTERM/SIGINT, then finish the batch.

    Each batch's rows and its position commit in one transaction, so a stop anywhere resumes
    exactly where the last commit left off."""
    import gc
    import signal
    import threading
    import time

    from engine import metrics
    from engine.commands.streaming import database_watched, wait_for_database
    from engine.logs import get_logger

    log = get_logger("engine.projector")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    gc.set_threshold(50_000, 50, 50)  # long-running worker: fewer full collections
    settings = get_settings()
    metrics.serve(settings.metrics_port)
    database = wait_for_database(settings, stop)
    with open_runtime(settings, database=database) as rt, database_watched(rt):
        projector = _projector(rt, only)
        log.info(
            "projector following the log",
            projections=list(projector.names),
            position=projector.position(),
        )
        last_lag = 0.0

        def progress(_done: int, _position: int) -> None:
            nonlocal last_lag
            if time.monotonic() - last_lag >= 1.0:  # one query a second at most
                metrics.projection_lag.set(projector.lag())
                last_lag = time.monotonic()

        done = 0

        def follow() -> int:  # an outage mid-stream: logged, counted, waited out
            nonlocal done
            done += projector.run(until_caught_up=False, stop=stop.is_set, progress=progress)
            return done

        retry_transient(follow, what="database", log=log, stop=stop)
        log.info("projector stopped", projected=done, position=projector.position())
        if projector is not rt.projector:
            projector.close()
    return 0


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
            report = _ingest(rt, iter(lines), f"demo:seed={args.seed}", len(lines)).as_dict()
            where = f"{schema}.dead_letters"
        else:
            from engine.commands.demo_kafka import demo_through_kafka

            report, where = demo_through_kafka(rt, demo_settings, lines)
        projected = project_with_progress(rt)
        funnel = reports.funnel(rt.db)
        routing = reports.routing(rt.db)
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
    print(_funnel_text(funnel))
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


def _funnel_text(funnel: dict[str, Any]) -> str:
    text = render(
        "table",
        funnel["stages"],
        columns=["stage", "reached", "conversion_pct", "now"],
        title=f"Funnel: {funnel['leads_total']} leads ({funnel['anonymous_now']} still anonymous)",
    )
    exits = ", ".join(f"{k} {v}" for k, v in funnel["exits_now"].items())
    return f"{text}\n\nexits now: {exits}"


def report_funnel(args: argparse.Namespace) -> int:
    from engine.analytics.funnel import snapshot
    from engine.commands.reporting import dataset_of, window_of

    window = window_of(args)
    with open_runtime() as rt:
        if any(window.describe().values()):
            funnel = snapshot(dataset_of(rt, window), window.start, window.end)
        else:
            funnel = reports.funnel(rt.db)
    funnel.update(window.describe())
    if args.format == "table":
        cut = ", ".join(
            f"--{k.replace('_', '-')} {v.isoformat()}" for k, v in window.describe().items() if v
        )
        print(_funnel_text(funnel) + (f"\n({cut})" if cut else ""))
    else:
        print(render(args.format, funnel["stages"], document=funnel))
    return 0


def generate(args: argparse.Namespace) -> int:
    events = generator.generate(
        args.leads, args.seed, span_days=args.days, identity=getattr(args, "identity", 0.0)
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


def schema_files() -> dict[str, str]:
    from engine import outbound

    return {
        f"{t}.json": json.dumps(event_json_schema(t), indent=2, sort_keys=True) + "\n"
        for t in sorted(EVENT_TYPES)
    } | {  # the outbound ones: what `leadengine relay` publishes (engine/outbound.py)
        f"{t}.json": json.dumps(outbound.json_schema(t), indent=2, sort_keys=True) + "\n"
        for t in sorted(outbound.DATA)
    }


def schemas_export(args: argparse.Namespace) -> int:
    files = schema_files()
    if args.check:
        stale = [
            n
            for n, text in files.items()
            if not (args.dir / n).exists() or (args.dir / n).read_text("utf-8") != text
        ]
        extra = sorted(p.name for p in args.dir.glob("*.json") if p.name not in files)
        for name in stale:
            print(f"differs from the model: {args.dir / name}", file=sys.stderr)
        for name in extra:
            print(f"no such event type: {args.dir / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.dir / name).write_text(text, "utf-8")
    print(f"wrote {len(files)} schemas to {args.dir}")
    return 0


def rules_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    queues = rules.routing.queues if rules.routing else ()
    print(
        f"{args.file}: ok ({rules.ref}: {len(rules.fit.rules)} fit rules, "
        f"{len(rules.engagement.rules)} engagement rules; models "
        f"{', '.join(m.ref for m in rules.all_models())}; {len(rules.personas)} personas; "
        f"{len(queues)} routing queues; SLA {'on' if rules.sla else 'off'}; money in "
        f"{rules.money.reporting_currency}, {len(rules.money.rates)} rates)"
    )
    return 0


def rules_show(args: argparse.Namespace) -> int:
    from importlib import resources

    print(resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8"), end="")
    return 0


def deadletters_list(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        rows = rt.deadletters.latest(args.limit)
    print(render(args.format, rows, columns=["id", "origin", "event_id", "field", "error"]))
    return 0


def db_init(args: argparse.Namespace) -> int:
    """Create or upgrade the schema (versioned, idempotent), the read contract and its role."""
    from engine import db as dbmod
    from engine import migrations
    from engine.readmodel import READER_ROLE, read_schema

    settings = get_settings()
    database = dbmod.resolve(settings)
    dry_run = getattr(args, "dry_run", False)
    with dbmod.init_lock(database):
        dbmod.ensure_schema(database)
        before = migrations.status(database)
        applied = migrations.migrate(database, dry_run=dry_run)
    if dry_run:
        print(
            f"schema {database.schema} is at "
            f"{before.current if before.current is not None else 'no version'}; would apply: "
            + (", ".join(f"{m.version} {m.name}" for m in applied) or "nothing")
        )
        return 0
    with open_runtime(settings, database=database):  # the event store's and keys' own tables
        pass
    reader = migrations.ensure_reader(database)
    done = ", ".join(f"{m.version} {m.name}" for m in applied) or "nothing (up to date)"
    print(f"schema {database.schema} on {database!r}: version {migrations.LATEST}; applied {done}")
    print(
        f"read contract: views in {read_schema(database.schema)}; role {READER_ROLE} "
        + (
            "can read them and nothing else"
            if reader
            else "does not exist (this user may not create roles): ask an administrator to "
            f"CREATE ROLE {READER_ROLE} NOLOGIN, then run db migrate again"
        )
    )
    return 0


def db_grant_reporting(args: argparse.Namespace) -> int:
    """A reporting job's login: reads the contract (member of leadengine_reader) and writes in
    a schema of its own, named after it; or the SQL for an administrator (--print-sql)."""
    from psycopg import errors

    from engine import migrations
    from engine.dependents import engine_schemas
    from engine.readmodel import READER_ROLE, read_schema, reporting_login_sql, role_exists

    login = args.name
    database = dbmod.resolve(get_settings())
    if not login or len(login.encode()) > 63 or login.startswith("pg_") or login == READER_ROLE:
        raise LeadEngineError(
            f"grant-reporting {login!r}: expected a login role's name (1 to 63 bytes, not "
            f"starting with pg_, not {READER_ROLE})"
        )
    if login in engine_schemas(database.schema):
        raise LeadEngineError(
            f"grant-reporting {login!r}: the job's schema is named after its login, and "
            f"{login} is one of the engine's schemas: choose another login name"
        )
    with database.connect() as conn:
        found = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (login,))
        row = found.fetchone()
        statements = reporting_login_sql(login, create_login=row is None)
        if args.print_sql:
            if not role_exists(conn):
                print(f"-- first: leadengine db migrate (creates {READER_ROLE}), or")
                print(f"CREATE ROLE {READER_ROLE} NOLOGIN;  -- then: leadengine db migrate")
            for statement in statements:
                print(statement.as_string(conn) + ";")
            return 0
        if row is None or not row[0]:
            raise LeadEngineError(
                f"no login role {login!r}"
                + (" (it exists but cannot log in)" if row else "")
                + f": create it first (CREATE ROLE {login} LOGIN PASSWORD '...'), or run "
                "`leadengine db grant-reporting NAME --print-sql` for the SQL to hand an "
                "administrator"
            )
    if not migrations.ensure_reader(database):
        raise LeadEngineError(
            f"role {READER_ROLE} does not exist and this user may not create it: ask an "
            f"administrator to CREATE ROLE {READER_ROLE} NOLOGIN, then run db migrate"
        )
    with database.connect() as conn:
        try:
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
        except errors.InsufficientPrivilege as exc:
            raise LeadEngineError(
                f"this database user may not grant {login} its rights ({exc}): run "
                "`leadengine db grant-reporting NAME --print-sql` and hand the SQL to an "
                "administrator"
            ) from None
        owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (login,)
        ).fetchone()
    if not owner or owner[0] != login:
        raise LeadEngineError(
            f"schema {login} exists and belongs to {owner[0] if owner else '?'}, not to {login}: "
            f"ALTER SCHEMA {login} OWNER TO {login}, or drop it, then run this again"
        )
    print(
        f"{login}: reads the views in {read_schema(database.schema)} (member of {READER_ROLE}); "
        f"writes in its own schema {login} (owner); nothing else"
    )
    return 0
