"""`leadengine project` and `projections list | retry | rebuild`: the read model's upkeep."""

from __future__ import annotations

import argparse
import threading

from structlog.stdlib import BoundLogger

from engine.cli.args import MAX_BATCH, Commands, batch_size, fmt, handles, seconds
from engine.cli.output import render, to_json
from engine.cli.progress import Progress
from engine.consumers.retry import retry_transient
from engine.domain.errors import LeadEngineError
from engine.projections.projector import DESCRIPTIONS, PROJECTIONS, Projector, names
from engine.runtime import Runtime, open_runtime
from engine.services.status import projection_status
from engine.settings import get_settings


def register(commands: Commands) -> None:
    p = commands.add("project", help="bring the read model up to date with the log")
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
        "--refresh-attribution",
        type=seconds,
        metavar="SECONDS",
        help="with --follow: every SECONDS, recompute the attribution windows the new "
        "events touched (`projections refresh-attribution`: attribution_by_window)",
    )
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="run only these projections: leads, touchpoints, history, costs (see "
        "`leadengine projections list`); the others keep their positions",
    )
    fmt(p)
    handles(p, project)

    proj = commands.group(
        "projections",
        help="the read model's projections: list, rebuild, retry",
        dest="projections_command",
    )
    p = proj.add_parser("list", help="each projection, its tables, position, lag, parked leads")
    fmt(p)
    handles(p, projections_list)
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
    fmt(p)
    handles(p, projections_retry)
    p = proj.add_parser(
        "refresh-attribution",
        help="recompute attribution credits by window (attribution_by_window), touched ones only",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Attribution credits of every model side by side for all time, each "
        "calendar month and each quarter (UTC), by channel and by campaign, conversions and "
        "revenue: the read contract's attribution_by_window, each window equal to `leadengine "
        "report attribution --model all --from START --to END` for it. Only the windows the "
        "events since the last refresh touched are recomputed (all of them on the first run or "
        "when the rules' version changed). Run it on a schedule (cron, a Kubernetes CronJob) "
        "after `project`, or let `project --follow --refresh-attribution SECONDS` run it.",
        epilog="examples:\n"
        "  leadengine projections refresh-attribution\n"
        "  leadengine projections refresh-attribution --all   # every window again\n",
    )
    p.add_argument(
        "--all", action="store_true", help="recompute every window, not only the touched ones"
    )
    handles(p, refresh_attribution)
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
        type=batch_size,
        default=20_000,
        metavar="N",
        help=f"notifications read per page during the load, 1 to {MAX_BATCH:,} (default 20000)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="load with N processes, each the leads of its share of the ids (default: one "
        "per CPU up to 4 when the log has 50,000 events or more, else 1)",
    )
    fmt(p)
    handles(p, projections_rebuild)


def project_with_progress(rt: Runtime, projector: Projector | None = None) -> int:
    projector = projector or rt.projector
    lag = projector.lag()
    bar = Progress("project", lag or None)
    done = projector.run(until_caught_up=True, progress=lambda n, _pos: bar.update(n))
    bar.done()
    return done


def refresh_attribution(args: argparse.Namespace) -> int:
    from engine.analytics import windows

    with open_runtime(create=False) as rt:
        reading = Progress("reading touchpoints")
        bar: list[Progress] = []

        def step(done: int, of: int) -> None:
            if not bar:
                reading.done("")
                bar.append(Progress("attribution windows", of))
            bar[0].update(done)

        out = windows.refresh(rt.db, rt.rules, full=args.all, progress=reading.update, windows=step)
        if bar:
            bar[0].done(f"{len(out.windows)} windows")
        table = f"{rt.db.schema}.{windows.TABLE}"
    if not out.windows:
        print(f"attribution windows up to date (log position {out.through_position})")
        return 0
    shown = ", ".join(out.windows[:6]) + (", ..." if len(out.windows) > 6 else "")
    what = "every window" if out.full else "the windows touched since the last refresh"
    print(
        f"refreshed {what}: {len(out.windows)} ({shown}), {out.rows} rows in {table}, "
        f"up to log position {out.through_position}"
    )
    return 0


def _projector(rt: Runtime, only: str | None) -> Projector:
    """The runtime's projector (all projections), or one limited to `--only`."""
    if not only:
        return rt.projector
    try:
        return Projector(rt.app, rt.db, only=only, cache_size=rt.settings.cache_size)
    except ValueError as exc:
        raise LeadEngineError(f"--only: {exc}") from None


def project(args: argparse.Namespace) -> int:
    only = getattr(args, "only", None)
    every = getattr(args, "refresh_attribution", None)
    if every is not None and (not getattr(args, "follow", False) or every <= 0):
        raise LeadEngineError("--refresh-attribution SECONDS needs --follow and SECONDS above 0")
    if getattr(args, "follow", False):
        return _follow(only, every)
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
    with open_runtime(create=False) as rt:
        status = {row["name"]: row for row in projection_status(rt.app, rt.db)}
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
    with open_runtime(create=False) as rt:
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
    from engine.projections.rebuild import MAX_REBUILD_WORKERS, rebuild

    try:
        names(args.name)
    except ValueError as exc:
        raise LeadEngineError(str(exc)) from None
    if args.workers is not None and args.workers < 1:
        raise LeadEngineError("--workers: expected 1 or more")
    if args.workers is not None and args.workers > MAX_REBUILD_WORKERS:
        # each worker is a process with its own PostgreSQL connection: hundreds would exhaust
        # the server's connections (and the machine) before any work was done
        raise LeadEngineError(
            f"--workers: expected at most {MAX_REBUILD_WORKERS} (each a process with its own "
            f"database connection), got {args.workers}"
        )
    with open_runtime(create=False) as rt:
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


def _follow(only: str | None = None, refresh_every: float | None = None) -> int:
    """The projector as a service: follow the log until SIGTERM/SIGINT, then finish the batch.

    Each batch's rows and its position commit in one transaction, so a stop anywhere resumes
    exactly where the last commit left off."""
    import gc
    import signal
    import threading
    import time

    from engine import metrics
    from engine.cli.running import database_watched, wait_for_database
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

        if refresh_every is not None:
            attribution_refresher(rt, refresh_every, stop, log)
        retry_transient(follow, what="database", log=log, stop=stop)
        log.info("projector stopped", projected=done, position=projector.position())
        if projector is not rt.projector:
            projector.close()
    return 0


def attribution_refresher(
    rt: Runtime, every: float, stop: threading.Event, log: BoundLogger
) -> None:
    """A thread that refreshes the touched attribution windows every `every` seconds until
    `stop` is set; a failed refresh is logged and tried again next time."""
    import threading

    from engine.analytics import windows

    def loop() -> None:
        while not stop.wait(every):
            try:
                done = windows.refresh(rt.db, rt.rules)
            except Exception as exc:  # the projector keeps running; the next round retries
                log.warning("attribution refresh failed", error=str(exc))
                continue
            if done.windows:
                log.info(
                    "attribution windows refreshed",
                    windows=len(done.windows),
                    rows=done.rows,
                    position=done.through_position,
                )

    threading.Thread(target=loop, name="attribution-refresh", daemon=True).start()
