"""Helpers for tests on a real broker: publish, read a topic back, count what the store holds."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer
from psycopg import sql

from engine.kafka.publish import Publisher
from engine.postgres.db import Database
from engine.services.application import EVENTS_TABLE


def publish(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    with Publisher(bootstrap, topic=topic, validate=False) as pub:
        pub.publish_many(events)


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Every record of `topic` (no group), waiting until at least `expect` arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[bootstrap],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= expect:
                # one more poll to catch anything beyond what we expected
                for batch in consumer.poll(timeout_ms=1000).values():
                    records.extend(batch)
                break
    finally:
        consumer.close()
    return records


def stored_facts(db: Database) -> list[list[str]]:
    """CloudEvent ids per lead stream, in stored order, straight from the events table (sorted:
    the stored key is sealed, so streams are matched to leads by the ids they hold)."""
    query = sql.SQL(
        "SELECT originator_id, state FROM {} "
        "WHERE topic LIKE %s ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(db.schema, EVENTS_TABLE))
    with db.connect() as conn:  # one statement: one snapshot, even while a consumer writes
        rows = conn.execute(query, ("%Lead.FactRecorded",)).fetchall()
    out: dict[Any, list[str]] = defaultdict(list)
    for oid, state in rows:
        out[oid].append(json.loads(bytes(state))["event_id"])
    return sorted(out.values())


def expected_facts(events: list[dict[str, Any]]) -> list[list[str]]:
    """What exactly-once ingestion must store: each lead's unique ids in publish order."""
    out: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for e in events:
        if e["type"].startswith(("campaign.", "rep.", "account.")) or e["id"] in seen:
            continue
        seen.add(e["id"])
        out[e["subject"]].append(e["id"])
    return sorted(out.values())


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("condition not met in time")


def count_events(db: Database) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db.schema, EVENTS_TABLE))
    try:
        with db.connect() as conn:
            row = conn.execute(query).fetchone()
    except Exception:
        return 0
    return int(row[0]) if row else 0
