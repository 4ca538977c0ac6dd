"""Relay benchmark: `leadengine relay` throughput against raw kafka-python produce, same run.

Records N generated leads (not timed), then times the relay publishing every decision of the
log to a fresh topic until caught up (read the log, decode, fold, build CloudEvents, produce,
wait for acks, commit positions). Then reads those records back and times a bare kafka-python
producer (same settings: acks=all, idempotence, same linger and batch size) sending the same
number of records, with the same keys, values and partitions, to another fresh topic. Ratio =
relay records/s / raw records/s (target >= 0.5).

Broker: LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu. Database:
LEADENGINE_DATABASE_URL, else an embedded PostgreSQL in a temp dir.

Usage: python bench/relay.py [--leads 2000] [--seed 1] [--partitions 4] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    settings = Settings(database_url=database_url(), database_schema=f"bench_relay_{run}")  # type: ignore[arg-type]
    database = dbmod.resolve(settings)
    try:
        with kafka_bootstrap() as bootstrap, open_runtime(settings, database=database) as rt:
            events = [validate_event(e) for e in generate(args.leads, seed=args.seed)]
            for start in range(0, len(events), 1000):
                rt.app.ingest(events[start : start + 1000])
            notifications = rt.app.recorder.max_notification_id() or 0
            relayed, raw = f"bench-relay-{run}", f"bench-raw-{run}"
            for topic in (relayed, raw):
                ensure_topic(bootstrap, topic, args.partitions)

            out = producer(bootstrap)
            relay = Relay(rt.app, rt.db, out, relayed, rt.rules, batch_size=args.batch_size)
            started = time.perf_counter()
            published = relay.run(until_caught_up=True)
            relay_seconds = time.perf_counter() - started
            out.close()

            records = read_back(bootstrap, relayed, published)
            assert len(records) == published, (len(records), published)
            sends = [(r.key, r.value, r.partition) for r in records]
            bare = producer(bootstrap)
            bare.partitions_for(raw)  # metadata outside the clock, as the relay's first batch has
            started = time.perf_counter()
            for key, value, partition in sends:
                bare.send(raw, key=key, value=value, partition=partition)
            bare.flush()
            raw_seconds = time.perf_counter() - started
            bare.close()
    finally:
        with database.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
    relay_rate = published / relay_seconds
    raw_rate = published / raw_seconds
    doc = {
        "leads": args.leads,
        "events_in_log": notifications,
        "decisions_published": published,
        "bytes": sum(len(v) for _, v, _ in sends),
        "relay_seconds": round(relay_seconds, 3),
        "relay_records_per_s": round(relay_rate),
        "relay_log_events_per_s": round(notifications / relay_seconds),
        "raw_produce_seconds": round(raw_seconds, 3),
        "raw_records_per_s": round(raw_rate),
        "ratio": round(relay_rate / raw_rate, 3),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
