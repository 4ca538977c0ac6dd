"""Ingest benchmark: generated file -> store -> projections, against a naive baseline.

Each phase runs in its own process (so peak RSS is its own) on its own schema of the same
PostgreSQL server (LEADENGINE_DATABASE_URL, else an embedded one in a temp dir):

  engine    batched ingest (many events, one transaction) + batched projection
            (common.ingest_and_project, the phase bench/identity.py and accounts.py run too)
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

from common import (  # noqa: E402
    child_phase,
    database_url,
    end_to_end_rate,
    peak_rss_mb,
    phase,
    phase_parser,
    projection_rate,
    store_rate,
    write_events,
)

from engine.domain.contract import parse_event  # noqa: E402
from engine.domain.generator import generate  # noqa: E402
from engine.domain.rules import load_rules  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.postgres import migrations  # noqa: E402
from engine.services.application import LeadEngine  # noqa: E402


def phase_baseline(url: str, data: list[bytes]) -> dict[str, float]:
    database = dbmod.from_url(url, f"bench_{uuid.uuid4().hex[:8]}")
    dbmod.ensure_schema(database)
    migrations.migrate(database)  # the tables the write side writes beside the events
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
    if args.phase == "engine":
        child_phase(args)
        return
    gc.set_threshold(100_000, 50, 100)
    data = Path(args.data).read_bytes().splitlines()
    print(json.dumps(phase_baseline(args.url, data)))


def main() -> None:
    parser = phase_parser(__doc__, ["engine", "baseline"])
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=5000,
        help="the naive baseline runs on the first N events only (it is slow)",
    )
    args = parser.parse_args()
    if args.phase:
        child(args)
        return
    url = database_url()
    with tempfile.TemporaryDirectory() as tmp:
        full = write_events(Path(tmp), "all", generate(args.leads, args.seed))
        part = Path(tmp) / "part.jsonl"
        part.write_text("".join(full.read_text().splitlines(True)[: args.baseline_events]))
        results = {
            "engine": phase(__file__, "engine", url, full),  # batched ingest + projection
            "baseline": phase(__file__, "baseline", url, part),
        }
    e, b = results["engine"], results["baseline"]
    store, e2e = store_rate(e), end_to_end_rate(e)
    base_rate = store_rate(b)
    print(f"events: engine {e['events']:,} ({args.leads:,} leads), baseline {b['events']:,}")
    print(
        f"baseline  one save per event     {base_rate:10,.0f} events/s   "
        f"peak RSS {b['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"engine    store (batched)        {store:10,.0f} events/s   "
        f"x{store / base_rate:5.1f} baseline"
    )
    print(f"engine    projection             {projection_rate(e):10,.0f} notifications/s")
    print(
        f"engine    end to end             {e2e:10,.0f} events/s   "
        f"x{e2e / base_rate:5.1f} baseline   peak RSS {e['peak_rss_mb']:6.0f} MB "
        f"(x{e['peak_rss_mb'] / b['peak_rss_mb']:.2f})"
    )


if __name__ == "__main__":
    main()
