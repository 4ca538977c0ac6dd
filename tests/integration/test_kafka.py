"""Kafka ingestion against a real broker and a real PostgreSQL: exactly-once effects."""

from __future__ import annotations

import json
import threading
from typing import Any

from confluent_kafka import Producer
from prometheus_client import REGISTRY

from engine.consumers.kafka import KafkaIngestor, tracking_name
from engine.domain.generator import generate
from engine.runtime import Runtime
from engine.settings import Settings
from tests.kafka_helpers import expected_facts, publish, read_topic, stored_facts


def consume(runtime: Runtime, settings: Settings, **kw: Any) -> dict[str, Any]:
    ingestor = KafkaIngestor(runtime.app, settings)
    return ingestor.run(stop=threading.Event(), until_caught_up=True, **kw).as_dict()


Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def produce(bootstrap: str, topic: str, records: list[Record]) -> list[tuple[int, int]]:
    """Send `records` (key, value, headers) and return each one's (partition, offset) as the broker
    acknowledged it. (Tansu's end offsets are the first offset of the last batch, so the
    produce acknowledgements are the truth to compare stored positions with.)"""
    acked: dict[int, tuple[int, int]] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})

    def delivered(i: int) -> Any:
        def callback(err: Any, msg: Any) -> None:
            assert err is None, err
            acked[i] = (msg.partition(), msg.offset())

        return callback

    for i, (key, value, headers) in enumerate(records):
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered(i))
    assert producer.flush(30) == 0
    return [acked[i] for i in range(len(records))]


def as_records(events: list[dict[str, Any]]) -> list[Record]:
    return [(e["subject"].encode(), json.dumps(e).encode(), []) for e in events]


def positions(runtime: Runtime, topic: str) -> dict[int, int | None]:
    return {p: runtime.app.max_position(tracking_name(topic, p)) for p in range(4)}


def last_offsets(acked: list[tuple[int, int]]) -> dict[int, int | None]:
    """The offset of the last record per partition (None: nothing sent to it)."""
    out: dict[int, int | None] = dict.fromkeys(range(4))
    for partition, offset in acked:
        out[partition] = max(offset, out[partition] or 0)
    return out


def test_consumes_everything_once_in_each_leads_order(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(60, seed=21)
    bootstrap, name = str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic
    acked = produce(bootstrap, name, as_records(events))
    stats = consume(runtime, kafka_settings)
    assert stats["records"] == len(events)
    assert stats["dead_lettered"] == 0
    topic = {"topic": kafka_settings.kafka_topic}  # the Prometheus counters say the same
    assert REGISTRY.get_sample_value("leadengine_consumer_records_total", topic) == len(events)
    assert (
        REGISTRY.get_sample_value("leadengine_consumer_accepted_total", topic)
        == (stats["accepted"])
    )
    assert (
        REGISTRY.get_sample_value("leadengine_consumer_batch_seconds_count", topic)
        == (stats["batches"])
    )
    assert stored_facts(runtime.db) == expected_facts(events)
    # the stored position of each partition is the offset of its last record, exactly
    expected = last_offsets(acked)
    assert None not in expected.values()  # 60 leads' keys reach every partition
    assert positions(runtime, name) == expected
    # one more record: exactly that one is consumed, and only its partition's position moves
    (extra,) = generate(1, seed=121)[:1]
    ((partition, offset),) = produce(bootstrap, name, as_records([extra]))
    stats = consume(runtime, kafka_settings)
    assert (stats["records"], stats["accepted"], stats["duplicates"]) == (1, 1, 0)
    assert positions(runtime, name) == expected | {partition: offset}


def test_redelivery_and_group_reset_change_nothing(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(30, seed=22)
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    publish(bootstrap, kafka_settings.kafka_topic, events)
    publish(bootstrap, kafka_settings.kafka_topic, events)  # same CloudEvent ids again
    consume(runtime, kafka_settings)
    runtime.projector.run()
    head = runtime.app.recorder.max_notification_id()
    state_sql = f"SELECT * FROM {runtime.db.schema}.lead_state ORDER BY lead_id"
    with runtime.db.connect() as conn:
        before = conn.execute(state_sql).fetchall()
    assert stored_facts(runtime.db) == expected_facts(events)
    # a new group starts from the beginning of the topic: the store's positions still win
    reset = kafka_settings.model_copy(update={"kafka_group": kafka_settings.kafka_group + "-reset"})
    stats = consume(runtime, reset)
    assert stats["records"] == 0 and stats["accepted"] == 0
    # ... and they are not skipping everything: a new record after them is consumed, alone
    (extra,) = generate(1, seed=122)[:1]
    produce(bootstrap, kafka_settings.kafka_topic, as_records([extra]))
    stats = consume(runtime, reset)
    assert (stats["records"], stats["accepted"]) == (1, 1)
    runtime.projector.run()
    head = runtime.app.recorder.max_notification_id()
    with runtime.db.connect() as conn:
        before = conn.execute(state_sql).fetchall()
    published = 2 * len(events) + 1
    # and even with the store's positions forgotten, every record is a duplicate
    with runtime.db.connect() as conn:
        conn.execute(f"DELETE FROM {runtime.db.schema}.leadengine_tracking")
    stats = consume(runtime, reset.model_copy(update={"kafka_group": reset.kafka_group + "2"}))
    assert stats["records"] == published and stats["accepted"] == 0
    runtime.projector.run()
    assert runtime.app.recorder.max_notification_id() == head
    with runtime.db.connect() as conn:
        after = conn.execute(state_sql).fetchall()
    assert after == before


def test_poison_records_go_to_the_dead_letter_topic_with_reasons(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    topic = kafka_settings.kafka_topic
    good = generate(5, seed=23)
    poison: list[tuple[bytes | None, bytes | None, str]] = [
        (b"k1", b"{not json", "malformed JSON"),
        (b"k2", b'"just a string"', "not a CloudEvent"),
        (
            b"k3",
            json.dumps({**good[0], "id": "u1", "type": "touch.teleported"}).encode(),
            "unknown event type",
        ),
        (b"k4", json.dumps({**good[0], "id": "u2", "time": "soon"}).encode(), "field 'time'"),
        (b"k5", json.dumps({**good[0], "id": "u3", "data": {"bogus": 1}}).encode(), "field 'data."),
        (b"k6", b'{"pad": "' + b"x" * (300 * 1024) + b'"}', "payload too large"),
        (b"k7", None, "tombstone"),
    ]
    # what each refusal names (the field at fault, the CloudEvent id when one was read)
    field = {b"k3": "type", b"k4": "time", b"k5": "data.available"}  # k5: a required field missing
    event_id = {b"k3": "u1", b"k4": "u2", b"k5": "u3"}
    half = len(good) // 2
    trace = [("trace", b"abc")]
    bad: list[Record] = [(k, v, trace) for k, v, _ in poison]
    records = [*as_records(good[:half]), *bad, *as_records(good[half:])]
    acked = produce(bootstrap, topic, records)
    where = dict(zip([k for k, _, _ in poison], acked[half : half + len(poison)], strict=True))

    stats = consume(runtime, kafka_settings)
    assert stats["dead_lettered"] == len(poison)
    assert stored_facts(runtime.db) == expected_facts(good)
    letters = read_topic(bootstrap, kafka_settings.dlq_topic, expect=len(poison))
    assert len(letters) == len(poison)
    by_key = {r.key: r for r in letters}
    for key, value, reason in poison:
        record = by_key[key]
        headers = {k: v.decode() for k, v in record.headers}
        assert reason in headers["leadengine.error"], headers
        partition, offset = where[key]
        assert {k: v for k, v in headers.items() if k != "leadengine.error"} == {
            "trace": "abc",
            "leadengine.error.kind": "invalid",
            "leadengine.error.field": field.get(key, ""),
            "leadengine.error.event_id": event_id.get(key, ""),
            "leadengine.source.topic": topic,
            "leadengine.source.partition": str(partition),
            "leadengine.source.offset": str(offset),
        }
        assert record.value == (value or b"")
    # dead letters' positions are tracked: a restart does not send them again
    again = consume(runtime, kafka_settings.model_copy(update={"kafka_group": "other-" + topic}))
    assert again["dead_lettered"] == 0
    assert len(read_topic(bootstrap, kafka_settings.dlq_topic, expect=len(poison))) == len(poison)


def test_records_from_another_client_library_are_ingested(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(10, seed=24)
    producer = Producer(
        {
            "bootstrap.servers": kafka_settings.kafka_bootstrap_servers,
            "compression.type": "lz4",
            "linger.ms": 20,
        }
    )
    for event in events:
        producer.produce(
            kafka_settings.kafka_topic,
            key=event["subject"].encode(),
            value=json.dumps(event).encode(),
        )
    assert producer.flush(30) == 0
    stats = consume(runtime, kafka_settings)
    assert stats["records"] == len(events) and stats["dead_lettered"] == 0
    assert stored_facts(runtime.db) == expected_facts(events)
