"""The demo's Kafka leg: publish the generated lines, consume them back until caught up.

Rejected records go to the demo topic's dead-letter topic, as in production, and are also kept
in the demo schema's dead_letters table: the demo's broker (embedded) is gone when it exits, the
table stays for `leadengine deadletters list`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

from engine.cli.progress import Progress
from engine.consumers.deadletter_topic import DeadLetterTopic
from engine.consumers.kafka import KafkaIngestor
from engine.domain.errors import InvalidEvent
from engine.kafka.broker import EmbeddedBroker
from engine.kafka.publish import Publisher, ensure_topic
from engine.postgres.deadletters import DeadLetter, DeadLetterStore
from engine.runtime import Runtime
from engine.settings import Settings


class _AlsoInTable(DeadLetterTopic):
    """The dead-letter topic, and a copy of each letter in the dead_letters table."""

    def __init__(self, bootstrap: str, settings: Settings, table: DeadLetterStore) -> None:
        super().__init__(bootstrap, settings)
        self.table = table

    def send(self, letters: Sequence[tuple[Any, InvalidEvent]]) -> None:
        super().send(letters)
        self.table.add(
            [
                DeadLetter(f"kafka:{r.topic}:{r.partition}:{r.offset}", r.value or b"", error)
                for r, error in letters
            ]
        )


def demo_through_kafka(
    rt: Runtime, settings: Settings, lines: list[bytes]
) -> tuple[dict[str, Any], str]:
    """Uses the configured broker (on a demo topic of its own) or an embedded one."""
    broker = None if settings.kafka_bootstrap_servers else EmbeddedBroker()
    bootstrap = settings.kafka_bootstrap_servers or (broker.bootstrap if broker else "")
    run = uuid.uuid4().hex[:8]
    demo = settings.model_copy(
        update={
            "kafka_topic": f"{settings.kafka_topic}.demo-{run}",
            "kafka_group": f"{settings.kafka_group}.demo-{run}",
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
        }
    )
    try:
        options = demo.kafka_client_options()
        ensure_topic(bootstrap, demo.kafka_topic, partitions=4, **options)
        bar = Progress("publish", len(lines))
        with Publisher(bootstrap, topic=demo.kafka_topic, validate=False, **options) as pub:
            for n, line in enumerate(lines, start=1):
                try:
                    pub.publish(line)
                except InvalidEvent:  # malformed JSON: send the raw bytes, the consumer refuses it
                    pub.producer.send(demo.kafka_topic, key=b"demo", value=line)
                bar.update(n)
        bar.done()
        progress = Progress("consume", len(lines))
        ingestor = KafkaIngestor(
            rt.app, demo, bootstrap=bootstrap, on_batch=lambda s: progress.update(s.records)
        )
        ingestor.dlq = _AlsoInTable(bootstrap, demo, rt.deadletters)
        stats = ingestor.run(stop=threading.Event(), until_caught_up=True)
        progress.done()
    finally:
        if broker:
            broker.stop()
    counts = {
        "published": len(lines),
        "consumed": stats.records,
        "accepted": stats.accepted,
        "duplicates": stats.duplicates,
        "conflicts": stats.conflicts,
        "dead_lettered": stats.dead_lettered,
    }
    return counts, f"Kafka topic {demo.dlq_topic} and in {rt.db.schema}.dead_letters"
