"""Scale-out benchmark: events/s into the store with 1 and with 2 consumer processes in one
group, on the same topic (several partitions), the same run and the same machine.

Each run gets a fresh schema and a fresh consumer group; its members are separate processes
(`KafkaIngestor.run(until_caught_up=True)`, as `leadengine consume --until-caught-up`). The rate
is all records over the wall time from the first record any member received to the moment the
last member was caught up (group joins are printed apart). The 1-process run is the baseline.

Beside the rates: batches redone after a version conflict (and how many more than twice), and
the serial part of the write path: how long each batch held the events table's lock (from the
lock to its commit, timed by the recorder, engine/postgres/lean.py) against the time its
process spent deciding and storing batches. From the 1-process run's figures, Amdahl's bound
for N consumer processes on separate machines against one PostgreSQL:
S(N) = 1 / (s + (1 - s) / N), s = lock held / busy; ceiling 1 / s (docs/operations.md).

Broker: LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu. Database:
LEADENGINE_DATABASE_URL, else an embedded PostgreSQL in a temp dir.

Usage: python bench/consumers.py [--leads 3000] [--seed 1] [--partitions 4] [--max 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, kafka_bootstrap, peak_rss_mb  # noqa: E402

from engine.domain.generator import generate  # noqa: E402
from engine.kafka.publish import Publisher, ensure_topic  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.settings import Settings  # noqa: E402


def settings_for(args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=args.url,
        database_schema=args.schema,  # type: ignore[arg-type]
        kafka_bootstrap_servers=args.bootstrap,
        kafka_topic=args.topic,
        kafka_group=args.group,
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=1000,
        batch_size=args.batch_size,
    )


def member(args: argparse.Namespace) -> dict[str, Any]:
    """One consumer process of the group, to caught-up."""
    from engine.consumers.kafka import KafkaIngestor
    from engine.runtime import open_runtime

    gc.set_threshold(100_000, 50, 100)  # as `leadengine consume` does
    with open_runtime(settings_for(args)) as rt:
        started_wall = time.time()
        stats = KafkaIngestor(rt.app, settings_for(args)).run(until_caught_up=True)
        ended = time.time()
        lock = getattr(rt.app.recorder, "lock_times", None)
        lock_doc = lock.as_dict() if lock is not None else {}
    first = started_wall + ((stats.first_record or time.monotonic()) - stats.started)
    return {
        "records": stats.records,
        "accepted": stats.accepted,
        "retries": stats.retries,
        "conflicts": stats.race.races,
        "max_in_a_row": stats.race.max_races_in_a_row,
        "over_twice": getattr(stats.race, "redone_over_twice", None),
        "busy_s": getattr(stats, "busy_s", None),
        "assignments": getattr(stats, "assignments", None),
        "lock": lock_doc,
        "first_record": first,
        "ended": ended,
        "join_s": first - started_wall,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_group(args: argparse.Namespace, url: str, processes: int) -> dict[str, Any]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    database = dbmod.from_url(url, schema)
    group = f"scale-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable, __file__, "--phase", "member", "--url", url, "--bootstrap",
        args.bootstrap, "--topic", args.topic, "--schema", schema, "--group", group,
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    env = os.environ | {"LEADENGINE_LOG_LEVEL": "WARNING"}
    try:
        subprocess.run(  # create the schema once, outside the timing
            [sys.executable, "-m", "engine", "db", "init"],
            cwd=ROOT,
            env=env | {"LEADENGINE_DATABASE_URL": url, "LEADENGINE_DATABASE_SCHEMA": schema},
            check=True,
            capture_output=True,
        )
        print(f"... {processes} consumer process(es)", file=sys.stderr, flush=True)
        procs = [
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
            for _ in range(processes)
        ]
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            if proc.returncode:
                sys.exit(f"consumer failed:\n{err[-4000:]}")
            outs.append(json.loads(out.strip().splitlines()[-1]))
        with database.connect() as conn:
            topics = dict(
                conn.execute(
                    f'SELECT topic, count(*) FROM "{schema}".leadengine_events GROUP BY topic'
                ).fetchall()
            )
    finally:
        dbmod.drop_schema(database)
    records = sum(o["records"] for o in outs)
    seconds = max(o["ended"] for o in outs) - min(o["first_record"] for o in outs)
    return {
        "processes": processes,
        "records": records,
        "accepted": sum(o["accepted"] for o in outs),
        "stored": sum(topics.values()),
        # upstream facts (each must be stored once); the rest are the engine's decisions
        "facts": sum(n for t, n in topics.items() if t.endswith(("FactRecorded", "Recorded"))),
        "retries": sum(o["retries"] for o in outs),
        "conflicts": sum(o["conflicts"] for o in outs),
        "max_in_a_row": max(o["max_in_a_row"] for o in outs),
        "over_twice": sum(o["over_twice"] or 0 for o in outs),
        "busy_s": sum(o["busy_s"] or 0 for o in outs),
        "assignments": [o["assignments"] for o in outs],
        "lock_batches": sum(o["lock"].get("lock_batches", 0) for o in outs),
        "lock_hold_s": sum(o["lock"].get("lock_hold_s", 0.0) for o in outs),
        "lock_wait_s": sum(o["lock"].get("lock_wait_s", 0.0) for o in outs),
        "lock_max_hold_s": max(o["lock"].get("lock_max_hold_s", 0.0) for o in outs),
        "seconds": seconds,
        "join_s": max(o["join_s"] for o in outs),
        "per_process": [o["records"] for o in outs],
        "peak_rss_mb": max(o["peak_rss_mb"] for o in outs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max", type=int, default=2, help="largest group size measured")
    parser.add_argument("--batch-size", type=int, default=2000)
    for hidden in ("--phase", "--url", "--bootstrap", "--topic", "--schema", "--group"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(member(args)))
        return

    args.url = url = database_url()
    with kafka_bootstrap() as bootstrap:
        args.bootstrap = bootstrap
        args.topic = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topic(args.bootstrap, args.topic, partitions=args.partitions)
        events = generate(args.leads, args.seed)
        with Publisher(args.bootstrap, topic=args.topic, validate=False) as pub:
            pub.publish_many(events)
        runs = [run_group(args, url, n) for n in range(1, args.max + 1)]
    base = runs[0]["records"] / runs[0]["seconds"]
    print(
        f"topic: {len(events):,} events ({args.leads:,} leads), {args.partitions} partitions; "
        f"{os.cpu_count()} CPUs; PostgreSQL and the broker on the same machine"
    )
    for run in runs:
        rate = run["records"] / run["seconds"]
        print(
            f"{run['processes']} consumer process(es)  {rate:10,.0f} events/s  "
            f"x{rate / base:4.2f}   facts stored {run['facts']:,}, decisions "
            f"{run['stored'] - run['facts']:,}, batches retried after a conflict "
            f"{run['conflicts']} (most in a row {run['max_in_a_row']}, more than twice "
            f"{run['over_twice']}) "
            f"(records per process {run['per_process']}; join {run['join_s']:.1f} s, "
            f"not counted; assignments per process {run['assignments']})   "
            f"peak RSS {run['peak_rss_mb']:.0f} MB per process"
        )
        if run["lock_batches"]:
            hold = run["lock_hold_s"] / run["lock_batches"]
            print(
                f"  events-table lock: {run['lock_batches']} batches, held {hold * 1000:.1f} ms "
                f"per batch (max {run['lock_max_hold_s'] * 1000:.0f} ms), waited "
                f"{run['lock_wait_s'] / run['lock_batches'] * 1000:.1f} ms per batch; held "
                f"{run['lock_hold_s']:.2f} s of {run['busy_s']:.2f} s busy"
            )
    first = runs[0]
    if first["lock_batches"] and first["busy_s"]:
        s = first["lock_hold_s"] / first["busy_s"]
        bound = ", ".join(f"N={n}: x{1 / (s + (1 - s) / n):.1f}" for n in (2, 4, 8, 16, 32))
        print(
            f"Amdahl, 1-process run: serial part s = lock held / busy = {s:.3f}; "
            f"N processes on separate machines, one PostgreSQL: {bound}; ceiling x{1 / s:.1f} "
            f"({first['records'] / first['busy_s'] / s:,.0f} events/s at this batch size)"
        )


if __name__ == "__main__":
    main()
