"""Ingest benchmark: generated file -> store -> projections, against a naive baseline.

Each phase runs in its own process (so peak RSS is its own) on its own schema of the same
PostgreSQL server (LEADENGINE_DATABASE_URL, else an embedded one in a temp dir):

  engine    batched ingest (many events, one transaction) + batched projection
  baseline  one `Application.save` per event, no cache (the naive way), no projection

Usage: python bench/ingest.py [--leads 3000] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, peak_rss_mb, run_phase  # noqa: E402

from engine.consumers.lines import ingest_lines  # noqa: E402
from engine.domain.contract import parse_event  # noqa: E402
from engine.domain.generator import generate, lines  # noqa: E402
from engine.domain.rules import load_rules  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402
from engine.services.application import LeadEngine  # noqa: E402
from engine.settings import Settings  # noqa: E402


def phase_engine(url: str, data: list[bytes]) -> dict[str, float]:
    database = dbmod.from_url(url, f"bench_{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=url, database_schema=database.schema)  # type: ignore[arg-type]
    try:
        with open_runtime(settings, database=database) as rt:
            t0 = time.perf_counter()
            report = ingest_lines(
                data, origin="bench", app=rt.app, deadletters=rt.deadletters, batch_size=1000
            )
            t1 = time.perf_counter()
            projected = rt.projector.run()
            t2 = time.perf_counter()
        return {
            "events": report.accepted,
            "store_s": t1 - t0,
            "project_s": t2 - t1,
            "notifications": projected,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        dbmod.drop_schema(database)


def phase_baseline(url: str, data: list[bytes]) -> dict[str, float]:
    database = dbmod.from_url(url, f"bench_{uuid.uuid4().hex[:8]}")
    dbmod.ensure_schema(database)
    env = database.eventsourcing_env() | {"AGGREGATE_CACHE_MAXSIZE": ""}
    app = LeadEngine(rules=load_rules(), env=env, master_key=os.urandom(32))
    try:
        t0 = time.perf_counter()
        events = [parse_event(raw) for raw in data]
        for event in events:
            app.ingest([event])  # loads from the store, records, one save per event
        t1 = time.perf_counter()
        return {
            "events": len(events),
            "store_s": t1 - t0,
            "project_s": 0.0,
            "notifications": 0,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        app.close()
        dbmod.drop_schema(database)


def child(args: argparse.Namespace) -> None:
    gc.set_threshold(100_000, 50, 100)
    data = Path(args.data).read_bytes().splitlines()
    fn = phase_engine if args.phase == "engine" else phase_baseline
    print(json.dumps(fn(args.url, data)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=5000,
        help="the naive baseline runs on the first N events only (it is slow)",
    )
    parser.add_argument("--phase", choices=["engine", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args)
        return
    url = database_url()
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "all.jsonl"
        full.write_text("".join(lines(generate(args.leads, args.seed))))
        part = Path(tmp) / "part.jsonl"
        part.write_text("".join(full.read_text().splitlines(True)[: args.baseline_events]))
        results = {}
        for phase, path in (("engine", full), ("baseline", part)):
            results[phase] = run_phase(__file__, phase, ["--url", url, "--data", str(path)])
    e, b = results["engine"], results["baseline"]
    store_rate = e["events"] / e["store_s"]
    e2e_rate = e["events"] / (e["store_s"] + e["project_s"])
    proj_rate = e["notifications"] / e["project_s"] if e["project_s"] else 0.0
    base_rate = b["events"] / b["store_s"]
    print(f"events: engine {e['events']:,} ({args.leads:,} leads), baseline {b['events']:,}")
    print(
        f"baseline  one save per event     {base_rate:10,.0f} events/s   "
        f"peak RSS {b['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"engine    store (batched)        {store_rate:10,.0f} events/s   "
        f"x{store_rate / base_rate:5.1f} baseline"
    )
    print(f"engine    projection             {proj_rate:10,.0f} notifications/s")
    print(
        f"engine    end to end             {e2e_rate:10,.0f} events/s   "
        f"x{e2e_rate / base_rate:5.1f} baseline   peak RSS {e['peak_rss_mb']:6.0f} MB "
        f"(x{e['peak_rss_mb'] / b['peak_rss_mb']:.2f})"
    )


if __name__ == "__main__":
    main()
