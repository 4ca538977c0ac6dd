"""The relay on a real PostgreSQL and a real Kafka-protocol broker (Tansu), read back by a
second client (confluent-kafka, not kafka-python): every decision, once per id (after a
`kill -9` too), in order per lead, nothing personal of a forgotten lead."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from jsonschema import Draft202012Validator
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.decisions import TYPES, decision_id
from engine.domain.generator import generate
from engine.kafka import relay
from engine.runtime import Runtime
from engine.services.application import EVENTS_TABLE
from engine.settings import Settings
from examples.crm_task import tasks
from tests.kafka_helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
DECISION_TOPICS = tuple(f"engine.aggregates.lead:{cls.__qualname__}" for cls in TYPES)


def ingest(runtime: Runtime, leads: int, seed: int) -> None:
    events = [validate_event(e) for e in generate(leads, seed=seed)]
    for start in range(0, len(events), 500):
        runtime.app.ingest(events[start : start + 500])


def stored_decisions(runtime: Runtime) -> dict[str, list[str]]:
    """Each lead's decision ids in stored order, straight from the events table."""
    query = sql.SQL(
        "SELECT originator_id, originator_version FROM {} WHERE topic = ANY(%s) "
        "ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(runtime.db.schema, EVENTS_TABLE))
    with runtime.db.connect() as conn:
        rows = conn.execute(query, (list(DECISION_TOPICS),)).fetchall()
    out: dict[str, list[str]] = defaultdict(list)
    for oid, version in rows:
        out[str(oid)].append(decision_id(oid, version))
    return dict(out)


def read_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Every record of `topic` with confluent-kafka, waiting until `expect` unique ids arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    # assigned, not subscribed: no group to join (a join alone takes seconds)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    records: list[Any] = []
    ids: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(ids) < expect:
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                    continue
                records.append(msg)
                ids.add(json.loads(msg.value())["id"])
        for msg in consumer.consume(num_messages=1000, timeout=1.0):  # anything beyond
            if not msg.error():
                records.append(msg)
    finally:
        consumer.close()
    return records


def check_stream(records: list[Any], expected: dict[str, list[str]]) -> dict[str, int]:
    """Completeness, per-lead order (first sightings in stored order, one partition per lead)
    and duplicates only as identical records; returns counts for the caller's assertions."""
    by_id: dict[str, bytes] = {}
    partitions: dict[str, set[int]] = defaultdict(set)
    firsts: dict[str, list[str]] = defaultdict(list)
    duplicates = 0
    per_partition_order: dict[int, list[int]] = defaultdict(list)
    for msg in records:
        doc = json.loads(msg.value())
        lead = doc["data"]["lead_id"]
        partitions[lead].add(msg.partition())
        per_partition_order[msg.partition()].append(msg.offset())
        assert msg.key() == doc["subject"].encode()
        if doc["id"] in by_id:
            assert by_id[doc["id"]] == msg.value(), f"{doc['id']} published with other content"
            duplicates += 1
            continue
        by_id[doc["id"]] = msg.value()
        firsts[lead].append(doc["id"])
    assert dict(firsts) == expected  # every decision, each lead's in stored order
    assert all(len(p) == 1 for p in partitions.values())  # one lead, one partition
    return {"unique": len(by_id), "duplicates": duplicates}


def relay_cli(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "relay", "--format", "json", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def test_every_decision_reaches_the_topic_in_order_per_lead(
    runtime: Runtime, kafka_settings: Settings, leadengine: Any
) -> None:
    subjects = {e["subject"] for e in generate(150, seed=22)}
    ingest(runtime, leads=150, seed=22)
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    topic = f"d-{uuid.uuid4().hex[:8]}"
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    code, out = leadengine(
        "relay", "--topic", topic, "--bootstrap", bootstrap, "--until-caught-up",
        "--batch-size", "300", "--format", "json",
    )  # fmt: skip
    assert code == 0, leadengine.stderr
    doc = json.loads(out)
    assert doc["published"] == total and total > 100
    assert doc["position"] == runtime.app.recorder.max_notification_id()
    records = read_all(bootstrap, topic, total)
    counts = check_stream(records, expected)
    assert counts == {"unique": total, "duplicates": 0}
    kinds = {json.loads(m.value())["type"] for m in records}
    assert {json.loads(m.value())["subject"] for m in records} <= subjects  # the leads' keys
    assert {"lead.qualified", "lead.stage_changed", "lead.routed"} <= kinds
    moves = [json.loads(m.value())["data"] for m in records if b'"lead.stage_changed"' in m.value()]
    assert moves and all(d["to_stage"] != "mql" for d in moves)  # an MQL is lead.qualified
    schemas = {
        t: Draft202012Validator(json.loads((ROOT / "schemas" / f"{t}.json").read_text()))
        for t in kinds
    }
    for msg in records:
        event = json.loads(msg.value())
        schemas[event["type"]].validate(event)
        if event["type"] == "lead.qualified":
            reasons = event["data"]["reasons"]
            assert reasons and reasons[0]["points"] != 0
            assert abs(reasons[0]["points"]) >= abs(reasons[-1]["points"])
    qualified = {json.loads(m.value())["id"] for m in records if b'"lead.qualified"' in m.value()}
    example = subprocess.run(
        [sys.executable, "examples/crm_task.py", "--bootstrap", bootstrap, "--topic", topic,
         "--group", "", "--idle-ms", "2000"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    made = [json.loads(line) for line in example.stdout.splitlines()]
    assert {t["external_id"] for t in made} == qualified and len(made) == len(qualified)
    assert all(t["title"].startswith("Call new MQL (score ") and " by event " in t["description"]
               for t in made)  # fmt: skip
    values = [m.value() for m in records]
    assert list(tasks(values + values)) == list(tasks(values))  # re-delivered: no second task
    again, _ = leadengine(
        "relay", "--topic", topic, "--bootstrap", bootstrap, "--until-caught-up",
        "--format", "json",
    )  # fmt: skip
    assert again == 0
    assert relay.positions(runtime.db)[topic] == doc["position"]  # nothing new: nothing sent
    code, out = leadengine("status", "--format", "json")
    [row] = [r for r in json.loads(out)["relays"] if r["topic"] == topic]
    assert row["position"] == doc["position"] and row["lag"] == 0


def test_kill_9_mid_stream_then_restart_loses_nothing(
    runtime: Runtime, kafka_settings: Settings, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    ingest(runtime, leads=400, seed=23)
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    head = runtime.app.recorder.max_notification_id()
    topic = f"d-{uuid.uuid4().hex[:8]}"
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    # small batches: many commits before half the log, so the kill lands mid-stream even when
    # a loaded machine lets the relay run several batches between two looks
    args = ("--topic", topic, "--batch-size", "10")
    first = relay_cli(kafka_env, *args, log=tmp_path / "relay-1.log")
    try:
        wait_for(
            lambda: 0 < relay.positions(runtime.db).get(topic, 0) < head // 2,
            timeout=60,
            every=0.01,
        )
        first.kill()  # SIGKILL: no batch finished, no position committed past the acks
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    stopped_at = relay.positions(runtime.db)[topic]
    assert 0 < stopped_at < head
    second = relay_cli(kafka_env, *args, "--until-caught-up", log=tmp_path / "relay-2.log")
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, (tmp_path / "relay-2.log").read_text()[-2000:]
    assert json.loads(out)["position"] == head
    records = read_all(bootstrap, topic, total)
    counts = check_stream(records, expected)
    # what the killed relay published past its committed offsets is read back, not re-sent
    assert counts == {"unique": total, "duplicates": 0}


def test_a_forgotten_lead_is_relayed_by_its_pseudonym_only(
    runtime: Runtime, kafka_settings: Settings, leadengine: Any
) -> None:
    events = generate(30, seed=24)
    runtime.app.ingest([validate_event(e) for e in events])
    lead = next(
        e["subject"] for e in events if e["type"] == "touch.form_submitted" and e.get("subject")
    )
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    before = f"d-{uuid.uuid4().hex[:8]}"
    code, _ = leadengine("relay", "--topic", before, "--bootstrap", bootstrap, "--until-caught-up")
    assert code == 0
    forgotten = runtime.app.forget(lead, reason="ticket 7", by="dpo", at=datetime.now(UTC))
    replay = f"d-{uuid.uuid4().hex[:8]}"
    code, _ = leadengine(
        "relay", "--topic", replay, "--bootstrap", bootstrap, "--until-caught-up", "--from-start"
    )
    assert code == 0
    expected = stored_decisions(runtime)
    records = read_all(bootstrap, replay, sum(map(len, expected.values())))
    check_stream(records, expected)
    docs = [json.loads(m.value()) for m in records]
    mine = [d for d in docs if d["data"]["lead_id"] == str(forgotten.lead_id)]
    assert mine and mine[-1]["type"] == "lead.erased"
    assert {d["subject"] for d in mine} == {forgotten.pseudonym}
    assert all(lead.encode() not in m.value() and lead.encode() != m.key() for m in records)


def test_relay_and_timers_stop_cleanly_on_sigterm(
    runtime: Runtime, kafka_settings: Settings, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    ingest(runtime, leads=40, seed=25)
    head = runtime.app.recorder.max_notification_id()
    topic = f"d-{uuid.uuid4().hex[:8]}"
    services = {
        "relay": relay_cli(kafka_env, "--topic", topic, log=tmp_path / "relay.log"),
        "timers": subprocess.Popen(
            [sys.executable, "-m", "engine", "timers", "--format", "json"],
            env=kafka_env, cwd=ROOT, stdout=subprocess.PIPE, text=True,
            stderr=(tmp_path / "timers.log").open("w"),
        ),
    }  # fmt: skip
    try:
        wait_for(lambda: relay.positions(runtime.db).get(topic) == head, timeout=30, every=0.05)
        wait_for(lambda: "timers caught up" in (tmp_path / "timers.log").read_text())
        for proc in services.values():
            proc.send_signal(signal.SIGTERM)
        docs = {}
        for name, proc in services.items():
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
            docs[name] = json.loads(out)
    finally:
        for proc in services.values():
            if proc.poll() is None:
                proc.kill()
    assert docs["relay"]["position"] == head and docs["relay"]["published"] > 0
    assert docs["timers"]["position"] == head
