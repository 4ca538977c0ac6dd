"""Relay benchmark: `leadengine relay` throughput against raw kafka-python produce, same run.

Records N generated leads, timed against the same ingest on a schema without the outbox
(`ingest_ratio`: events/s with the outbox as a ratio of without), relays the log
once to read the records back, then for --rounds rounds times, each to a fresh topic and in a
rotated order: the relay as it runs (read the outbox, produce, wait for acks, commit positions
and offsets), the relay decoding the log instead (`from_log`: the path before the outbox, still
used below `outbox_start`), and a bare kafka-python producer (same settings: acks=all,
idempotence, same linger and batch size) sending the same records, with the same keys, values
and partitions. Ratio = relay records/s / raw records/s on the medians (target >= 0.5);
`log_path_ratio` the same for the log path.

Broker: LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu. Database:
LEADENGINE_DATABASE_URL, else an embedded PostgreSQL in a temp dir.

Usage: python bench/relay.py [--leads 2000] [--seed 1] [--partitions 4] [--batch-size 5000]
                            [--rounds 3] [--profile N]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, kafka_bootstrap  # noqa: E402

from engine.domain.contract import validate_event  # noqa: E402
from engine.domain.generator import generate  # noqa: E402
from engine.kafka.publish import ensure_topic  # noqa: E402
from engine.kafka.relay import Relay, producer  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402
from engine.settings import Settings  # noqa: E402


def read_back(bootstrap: str, topic: str, expect: int) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap.split(","), group_id=None,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    records: list[Any] = []
    deadline = time.monotonic() + 120
    try:
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def timed_relay(
    rt: Any, bootstrap: str, topic: str, args: Any, *, from_log: bool
) -> tuple[int, float]:
    """(published, seconds) of one relay run over the whole log to the fresh `topic`."""
    out = producer(bootstrap)
    relay = Relay(
        rt.app, rt.db, out, topic, rt.rules, batch_size=args.batch_size, from_log=from_log
    )
    profiler = cProfile.Profile() if args.profile and not from_log else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    published = relay.run(until_caught_up=True)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
        args.profile = 0  # once
    relay.close()
    out.close()
    return published, seconds


def timed_raw(bootstrap: str, topic: str, sends: list[tuple[bytes, bytes, int]]) -> float:
    bare = producer(bootstrap)
    bare.partitions_for(topic)  # metadata outside the clock
    started = time.perf_counter()
    for key, value, partition in sends:
        bare.send(topic, key=key, value=value, partition=partition)
    bare.flush()
    seconds = time.perf_counter() - started
    bare.close()
    return seconds


def timed_ingest(rt: Any, events: list[Any]) -> float:
    started = time.perf_counter()
    for start in range(0, len(events), 1000):
        rt.app.ingest(events[start : start + 1000])
    return time.perf_counter() - started


def ingest_without_outbox(settings: Settings, events: list[Any]) -> float:
    """The same ingest on a schema of its own, as before the outbox: no records, no check."""
    base = settings.model_copy(update={"database_schema": settings.database_schema + "_base"})
    database = dbmod.resolve(base)
    try:
        with open_runtime(base, database=database) as rt:
            with database.connect() as conn:
                conn.execute(
                    f'DROP TRIGGER outbox_complete ON "{base.database_schema}".leadengine_events'
                )
            rt.app.outbox = False
            return timed_ingest(rt, events)
    finally:
        with database.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{base.database_schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=5000)  # `leadengine relay`'s
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="each round times the outbox relay, the log relay and raw produce (rotated order) "
        "to fresh topics; medians are reported",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="print the first outbox relay run's N costliest functions (cProfile) to stderr",
    )  # fmt: skip
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url(), database_schema=f"bench_relay_{run}")  # type: ignore[arg-type]
    database = dbmod.resolve(settings)
    times: dict[str, list[float]] = {"outbox": [], "log": [], "raw": []}
    try:
        with kafka_bootstrap() as bootstrap, open_runtime(settings, database=database) as rt:
            events = [validate_event(e) for e in generate(args.leads, seed=args.seed)]
            ingest_outbox = timed_ingest(rt, events)  # first: a cold start costs it, not the base
            ingest_base = ingest_without_outbox(settings, events)
            notifications = rt.app.recorder.max_notification_id() or 0
            # as `leadengine relay` runs: no ingest's aggregates in memory, its GC thresholds
            rt.app.clear_cache()
            gc.collect()
            gc.set_threshold(50_000, 50, 50)
            first = f"bench-relay-{run}"
            ensure_topic(bootstrap, first, args.partitions)
            published, seconds = timed_relay(rt, bootstrap, first, args, from_log=False)
            records = read_back(bootstrap, first, published)
            assert len(records) == published, (len(records), published)
            sends = [(r.key, r.value, r.partition) for r in records]
            kinds = ["outbox", "log", "raw"]
            for n in range(args.rounds):
                for kind in kinds[n % 3 :] + kinds[: n % 3]:
                    topic = f"bench-{kind}-{run}-{n}"
                    ensure_topic(bootstrap, topic, args.partitions)
                    if kind == "raw":
                        times["raw"].append(timed_raw(bootstrap, topic, sends))
                        continue
                    count, seconds = timed_relay(rt, bootstrap, topic, args, from_log=kind == "log")
                    assert count == published, (kind, count, published)
                    times[kind].append(seconds)
    finally:
        with database.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
    median = {kind: statistics.median(t) for kind, t in times.items()}
    rate = {kind: published / t for kind, t in median.items()}
    doc = {
        "leads": args.leads,
        "events_in_log": notifications,
        "decisions_published": published,
        "bytes": sum(len(v) for _, v, _ in sends),
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "seconds": {kind: [round(x, 3) for x in t] for kind, t in times.items()},
        "relay_records_per_s": round(rate["outbox"]),
        "relay_log_events_per_s": round(notifications / median["outbox"]),
        "log_relay_records_per_s": round(rate["log"]),
        "raw_records_per_s": round(rate["raw"]),
        "ratio": round(rate["outbox"] / rate["raw"], 3),
        "ratio_per_round": [
            round(r / o, 3) for o, r in zip(times["outbox"], times["raw"], strict=True)
        ],
        "log_path_ratio": round(rate["log"] / rate["raw"], 3),
        # the outbox's cost moves to ingest: events/s with it as a ratio of without, same run
        "ingest_seconds": {"outbox": round(ingest_outbox, 3), "without": round(ingest_base, 3)},
        "ingest_ratio": round(ingest_base / ingest_outbox, 3),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
