"""Rebuild benchmark: how fast a projection is rebuilt from the whole log, beside the two
numbers that bound it, all measured in the same run on the same stored log.

  read      read and decode every notification (select pages, each page's lead keys in one
            round trip, the sealed mapper): the ceiling, the baseline the ratios are against
  stock     eventsourcing's own ProjectionRunner (subscription, one transaction with its
            tracking per event) keeping lead_state up to date: the stock way
  project   leadengine's incremental projector (all four projections, batches, upserts)
  rows      every lead's rows (`Folder.lead_rows`) made again after one fold of the log: CPU
            seconds per round (with --baseline, the baseline's engine too, rounds alternated)
  rebuild   `projections rebuild` of each projection (bulk COPY load, indexes, switch), in one
            process and with one process per CPU

Each phase runs in its own process (peak RSS and CPU seconds are its own: CPU is what to
compare on a loaded machine, where the wall time mostly waits for a core). The log is made once per
--leads/--seed in schema bench_rebuild_<leads>_<seed> and kept for the next run
(--fresh makes it again). Uses LEADENGINE_DATABASE_URL, else an embedded server.

With --baseline ROOT (another checkout, e.g. `git worktree add /tmp/base main`), the
incremental projector of that checkout runs too, on the same log in the same run ("project
(baseline)"); --phases picks the phases to run (default all).

--identity P tells P% of the captured journeys under several keys (links, merges, unmerges:
`generate --identity`), in a log of its own.

Usage: python bench/rebuild.py [--leads 8000] [--seed 1] [--stock-events 20000] [--fresh]
                               [--phases read,project] [--baseline ROOT] [--repeat N]
                               [--profile FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: the engine a phase runs: this checkout's, or another's (`rows` of --baseline: the phase's
#: code is this file's, the engine it measures the baseline's)
sys.path.insert(0, os.environ.get("LEADENGINE_BENCH_ENGINE") or str(ROOT))

from common import database_url, peak_rss_mb, run_phase, settings_for  # noqa: E402

from engine.domain.contract import parse_event  # noqa: E402
from engine.domain.generator import generate, lines  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.projections.projector import PROJECTIONS, Projector  # noqa: E402
from engine.projections.rebuild import rebuild  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402


def make_log(
    url: str, schema: str, leads: int, seed: int, fresh: bool, identity: float = 0.0
) -> int:
    database = dbmod.from_url(url, schema)
    if fresh:
        dbmod.drop_schema(database)
    with open_runtime(settings_for(url, schema), database=database) as rt:
        head = rt.app.recorder.max_notification_id() or 0
        if head:
            return head
        journeys = generate(leads, seed, identity=identity)
        events = [parse_event(line.encode()) for line in lines(journeys)]
        print(f"making the log: {len(events):,} events of {leads:,} leads ...", file=sys.stderr)
        for i in range(0, len(events), 2000):
            rt.app.ingest(events[i : i + 2000])
        return rt.app.recorder.max_notification_id() or 0


def phase_read(url: str, schema: str, _n: int) -> dict[str, Any]:
    with open_runtime(settings_for(url, schema)) as rt:
        mapper = rt.app.sealed_mapper
        decode = mapper.to_domain_event
        t0 = time.perf_counter()
        position, count = 0, 0
        while True:
            page = rt.app.recorder.select_notifications(start=position + 1, limit=20_000)
            if not page:
                break
            mapper.prefetch_keys(page)  # a page's lead keys in one round trip, as the projector
            for n in page:
                decode(n)
            count += len(page)
            position = page[-1].id
        return {"events": count, "seconds": time.perf_counter() - t0, "rss": peak_rss_mb()}


def phase_project(url: str, schema: str, _n: int) -> dict[str, Any]:
    with open_runtime(settings_for(url, schema)) as rt:
        scratch = dbmod.from_url(url, schema + "_inc")
        dbmod.drop_schema(scratch)
        with rt.db.connect() as conn:  # empty copies of the read model to project into
            conn.execute(f'CREATE SCHEMA "{scratch.schema}"')
            for table in [
                "projection_tracking",
                "parked",
                *(t for ts in PROJECTIONS.values() for t in ts),
            ]:
                conn.execute(
                    f'CREATE TABLE "{scratch.schema}".{table} '
                    f'(LIKE "{schema}".{table} INCLUDING ALL)'
                )
        projector = Projector(rt.app, scratch)
        try:
            t0 = time.perf_counter()
            count = projector.run()
            seconds = time.perf_counter() - t0
        finally:
            projector.close()
            dbmod.drop_schema(scratch)
        return {"events": count, "seconds": seconds, "rss": peak_rss_mb()}


def phase_rebuild(url: str, schema: str, workers: int) -> dict[str, Any]:
    with open_runtime(settings_for(url, schema)) as rt:
        per: dict[str, Any] = {}
        for name in PROJECTIONS:
            report = rebuild(rt.app, rt.db, name, workers=workers or None)
            per[name] = {
                "events": report.events,
                "load_s": report.load_seconds,
                "index_s": report.index_seconds,
                "switch_s": report.switch_seconds,
                "total_s": report.total_seconds,
            }
        return {"per": per, "rss": peak_rss_mb()}


def phase_rebuild_one(url: str, schema: str, _n: int) -> dict[str, Any]:
    return phase_rebuild(url, schema, 1)


#: What `projections rebuild` uses on a large log: one process per CPU, up to 4.
PARALLEL = min(os.cpu_count() or 1, 4)


def phase_rebuild_default(url: str, schema: str, _n: int) -> dict[str, Any]:
    return phase_rebuild(url, schema, PARALLEL)  # whatever the log's size


def phase_setup(url: str, schema: str, leads_seed: int) -> dict[str, Any]:
    leads_seed, percent = divmod(leads_seed, 101)  # the identity share, in percent
    leads, seed = divmod(leads_seed, 1000)
    return {"head": make_log(url, schema, leads, seed, False, percent / 100)}


def phase_stock(url: str, schema: str, limit: int) -> dict[str, Any]:
    """eventsourcing's ProjectionRunner: lead_state-like rows, one transaction per event."""
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.projection import Projection, ProjectionRunner

    from engine.aggregates.lead import Lead
    from engine.domain.rules import load_rules
    from engine.postgres.keyfile import load_master_key
    from engine.projections import rows
    from engine.services.application import LeadEngine

    database = dbmod.from_url(url, schema)
    rules = load_rules()
    settings = settings_for(url, schema)
    key = load_master_key(settings.master_key, settings.master_key_file, settings.home)
    leads: dict[Any, Any] = {}
    view_table = f'"{schema}".bench_stock_lead_state'

    class App(LeadEngine):
        name = "LeadEngine"

        def __init__(self, env: Any = None) -> None:
            super().__init__(rules=rules, env=env, master_key=key)

    class View(PostgresTrackingRecorder):
        def upsert(self, row: tuple[Any, ...], tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    f"INSERT INTO {view_table} (lead_id, stage, score, version) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (lead_id) DO UPDATE SET "
                    "stage = EXCLUDED.stage, score = EXCLUDED.score, version = EXCLUDED.version",
                    row,
                )
                self._insert_tracking(curs, tracking)

        def skip(self, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as curs:
                self._insert_tracking(curs, tracking)

    class StockLeads(Projection[View]):
        name = "bench_stock"

        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            agg = leads.get(domain_event.originator_id)
            agg = domain_event.mutate(agg)
            leads[domain_event.originator_id] = agg
            if isinstance(agg, Lead) and agg.facts:
                state = rows.lead_state_row(agg, rules)
                self.view.upsert((agg.id, agg.stage, state[7], agg.version), tracking)
            else:
                self.view.skip(tracking)

    with database.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {view_table}")
        conn.execute(
            f"CREATE TABLE {view_table} (lead_id uuid PRIMARY KEY, stage text, "
            "score numeric(6,2), version int)"
        )
        conn.execute(f'DROP TABLE IF EXISTS "{schema}".bench_stock_tracking')
    env = database.eventsourcing_env()  # the view's table: <schema>.bench_stock_tracking
    try:
        t0 = time.perf_counter()
        with ProjectionRunner(
            application_class=App, projection_class=StockLeads, view_class=View, env=env
        ) as runner:
            runner.wait(limit, timeout=3600)
            seconds = time.perf_counter() - t0
        return {"events": limit, "seconds": seconds, "rss": peak_rss_mb()}
    finally:
        with database.connect() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {view_table}")
            conn.execute(f'DROP TABLE IF EXISTS "{schema}".bench_stock_tracking')


#: rounds of the `rows` phase (each makes every lead's rows once)
ROWS_ROUNDS = 5


def phase_rows(url: str, schema: str, _n: int) -> dict[str, Any]:
    """Fold the whole log once, then make every lead's rows (state, scores, SLA, account
    signals: `Folder.lead_rows`, what the projector does for each lead a batch touches)
    ROWS_ROUNDS times: the CPU seconds of each round (process time, so a loaded machine's
    waits for a core do not count)."""
    from engine.projections.fold import Batch, Folder

    with open_runtime(settings_for(url, schema)) as rt:
        folder = Folder(rt.app, 10_000)
        folder.unbounded()
        batch, position, want = Batch(), 0, frozenset(PROJECTIONS)
        while page := rt.app.recorder.select_notifications(start=position + 1, limit=20_000):
            rt.app.sealed_mapper.prefetch_keys(page)
            for notification in page:
                folder.take(notification, notification.id, batch, want)
            position = page[-1].id
        folder.links.ensure(rt.app, position)
        leads = list(batch.leads.values())
        rounds = []
        for _ in range(ROWS_ROUNDS):
            t0 = time.process_time()
            folder.lead_rows(leads, batch.first_seen, position)
            rounds.append(time.process_time() - t0)
        return {"leads": len(leads), "rounds": rounds, "rss": peak_rss_mb()}


PHASES = {
    "read": phase_read,
    "stock": phase_stock,
    "project": phase_project,
    "rows": phase_rows,
    "rebuild1": phase_rebuild_one,
    "rebuild": phase_rebuild_default,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stock-events",
        type=int,
        default=20_000,
        help="the stock runner projects the first N events only (it is slow)",
    )
    parser.add_argument("--fresh", action="store_true", help="make the stored log again")
    parser.add_argument(
        "--identity",
        type=int,
        default=0,
        help="percent of captured journeys told under several keys (generate --identity)",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)}); read always runs",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose incremental projector runs too, on the same log",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --baseline: run both projectors this many times, alternating; the best of each",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="first run this checkout's projector once more, under cProfile, into this file "
        "(pstats; not timed)",
    )
    parser.add_argument("--phase", choices=[*PHASES, "setup"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        gc.set_threshold(100_000, 50, 100)
        fn = phase_setup if args.phase == "setup" else PHASES[args.phase]
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(fn, args.url, args.schema, args.n)
            profiler.dump_stats(args.profile)
        else:
            result = fn(args.url, args.schema, args.n)
        print(json.dumps(result))
        return
    url = database_url()
    schema = f"bench_rebuild_{args.leads}_{args.seed}" + (
        f"_id{args.identity}" if args.identity else ""
    )
    if args.fresh:
        dbmod.drop_schema(dbmod.from_url(url, schema))

    def run(phase: str, n: int, script: str = __file__) -> dict[str, Any]:
        # every phase in its own process: this one stays small, so each peak RSS is its own;
        # its CPU seconds (user + system, the whole process: start-up included) are taken here,
        # so a baseline checkout's phase is measured alike (on a loaded machine the wall time
        # mostly waits for a core; the CPU a phase took does not)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = run_phase(script, phase, ["--url", url, "--schema", schema, "--n", str(n)])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["cpu"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return result

    head = run("setup", (args.leads * 1000 + args.seed) * 101 + args.identity)["head"]
    stock_n = min(args.stock_events, head)
    wanted = {"read", *(p.strip() for p in args.phases.split(","))}
    unknown = wanted - set(PHASES)
    if unknown:
        parser.error(
            f"--phases: unknown {', '.join(sorted(unknown))}; expected of {', '.join(PHASES)}"
        )
    if args.profile:  # an extra run of this checkout's projector, profiled, not timed
        run_phase(
            __file__,
            "project",
            ["--url", url, "--schema", schema, "--n", "0", "--profile", str(args.profile)],
        )
    results = {phase: run(phase, stock_n) for phase in PHASES if phase in wanted}
    if args.baseline:
        results["project_base"] = run("project", stock_n, str(args.baseline / "bench/rebuild.py"))
        for _ in range(args.repeat - 1):  # alternate, keep each one's best (a loaded machine)
            for key, script in (
                ("project_base", args.baseline / "bench/rebuild.py"),
                ("project", Path(__file__)),
            ):
                again = run("project", stock_n, str(script))
                if key not in results or again["seconds"] < results[key]["seconds"]:
                    results[key] = again
    if "rows" in wanted and args.baseline:  # the baseline's engine, this file's phase
        for _ in range(args.repeat):  # alternated with this checkout's rounds
            results.setdefault("rows_base", {"rounds": []})["rounds"] += run_phase(
                __file__,
                "rows",
                ["--url", url, "--schema", schema, "--n", "0"],
                env={**os.environ, "LEADENGINE_BENCH_ENGINE": str(args.baseline)},
            )["rounds"]
            results["rows"]["rounds"] += run("rows", 0)["rounds"]
    base = results["read"]["events"] / results["read"]["seconds"]
    base_rss = results["read"]["rss"]

    def line(
        label: str, events: int, seconds: float, rss: float, note: str = "", cpu: float = 0.0
    ) -> None:
        rate = events / seconds
        used = f"CPU {cpu:6.1f} s" if cpu else " " * 12
        print(
            f"{label:<30} {rate:10,.0f} events/s  x{rate / base:5.2f}   "
            f"peak RSS {rss:6.0f} MB  x{rss / base_rss:4.2f}  {used}  {note}"
        )

    print(
        f"log: {head:,} notifications ({args.leads:,} leads, seed {args.seed}, identity "
        f"{args.identity}%), one machine"
    )
    r = results["read"]
    line("read + decode (baseline)", r["events"], r["seconds"], r["rss"], cpu=r["cpu"])
    if "stock" in results:
        s = results["stock"]
        line(
            "eventsourcing ProjectionRunner",
            s["events"],
            s["seconds"],
            s["rss"],
            f"(first {s['events']:,} events, lead_state only)",
        )
    if "project_base" in results:
        b = results["project_base"]
        line(
            "incremental projector, baseline",
            b["events"],
            b["seconds"],
            b["rss"],
            str(args.baseline),
            b["cpu"],
        )
    if "project" in results:
        p = results["project"]
        note = ""
        if "project_base" in results:
            b = results["project_base"]
            ratio = (p["events"] / p["seconds"]) / (b["events"] / b["seconds"])
            per_event = (p["cpu"] / p["events"]) / (b["cpu"] / b["events"])
            note = f"x{ratio:.2f} of the baseline's projector (CPU per event x{per_event:.2f})"
        line("incremental projector (all)", p["events"], p["seconds"], p["rss"], note, p["cpu"])
    if "rows" in results:
        mine = sorted(results["rows"]["rounds"])
        note = f"{results['rows']['leads']:,} leads, {len(mine)} rounds"
        if "rows_base" in results:
            theirs = sorted(results["rows_base"]["rounds"])
            print(
                f"{'lead rows, baseline':<30} CPU median {theirs[len(theirs) // 2]:6.3f} s, "
                f"best {theirs[0]:6.3f} s  {args.baseline}"
            )
            ratio = mine[len(mine) // 2] / theirs[len(theirs) // 2]
            note += f"; median x{ratio:.2f} of the baseline"
        print(
            f"{'lead rows (every lead)':<30} CPU median {mine[len(mine) // 2]:6.3f} s, "
            f"best {mine[0]:6.3f} s  {note}"
        )
    for phase, how in (("rebuild1", "1 process"), ("rebuild", f"{PARALLEL} processes")):
        if phase not in results:
            continue
        rb = results[phase]
        for name, one in rb["per"].items():
            line(
                f"rebuild {name} ({how}): load",
                one["events"],
                one["load_s"],
                rb["rss"],
                f"whole rebuild {one['total_s']:.1f} s (indexes {one['index_s']:.1f} s, "
                f"switch {one['switch_s']:.2f} s)",
            )
        total = sum(one["total_s"] for one in rb["per"].values())
        line(
            f"rebuild all four ({how}), whole",
            head * len(rb["per"]),
            total,
            rb["rss"],
            "four passes over the log",
        )
    print("peak RSS of a parallel rebuild is this process's; each worker holds its share")


if __name__ == "__main__":
    main()
