"""A record the store already holds the position of, delivered again (a broker or a seek that
replays the last record), is neither counted nor stored: the consumer's own guard, besides the
seek to stored + 1 (found by bench/db_mutants.py: with that seek right, `>=` for `>` in the
guard passed every Kafka test)."""

from __future__ import annotations

import threading

from kafka import TopicPartition

from engine.consumers.kafka import KafkaIngestor, tracking_name
from engine.domain.generator import generate
from engine.runtime import Runtime
from engine.settings import Settings
from tests.kafka_helpers import publish, read_topic, stored_facts


def test_the_last_stored_record_delivered_again_is_not_counted_or_stored(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(5, seed=23)
    bootstrap, topic = str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic
    publish(bootstrap, topic, events)
    first = KafkaIngestor(runtime.app, kafka_settings)
    first.run(stop=threading.Event(), until_caught_up=True)
    facts, head = stored_facts(runtime.db), runtime.app.recorder.max_notification_id()
    last = max(read_topic(bootstrap, topic, expect=len(events)), key=lambda r: r.offset)
    tp = TopicPartition(topic, last.partition)
    assert runtime.app.max_position(tracking_name(topic, last.partition)) == last.offset

    again = KafkaIngestor(runtime.app, kafka_settings)
    try:
        again.positions[tp] = last.offset  # as on assignment: the stored position
        again.process(tp, [last])
    finally:
        again.close()
    assert (again.stats.records, again.stats.batches, again.stats.accepted) == (0, 0, 0)
    assert stored_facts(runtime.db) == facts
    assert runtime.app.recorder.max_notification_id() == head
