"""The dead-letter topic: invalid records, original bytes, key and headers, plus the reason.

Headers added (all UTF-8): `leadengine.error`, `leadengine.error.kind` (`invalid`, or
`conflict`: its (source, id) is stored with other content), `leadengine.error.field`,
`leadengine.error.event_id`, `leadengine.source.topic`, `leadengine.source.partition`,
`leadengine.source.offset`. Sends are acknowledged (acks=all) before the batch's position is
committed, so a crash can at worst send a dead letter twice, never lose one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from kafka import KafkaProducer

from engine.consumers.retry import retry_transient
from engine.domain.errors import EventConflict, InvalidEvent
from engine.settings import Settings

PREFIX = "leadengine."


class Record(Protocol):
    """What the dead-letter topic keeps of a consumed record (kafka-python's ConsumerRecord)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...


def reason_headers(record: Record, error: InvalidEvent) -> list[tuple[str, bytes]]:
    own = [
        ("error", error.describe()),
        ("error.kind", "conflict" if isinstance(error, EventConflict) else "invalid"),
        ("error.field", error.field or ""),
        ("error.event_id", error.event_id or ""),
        ("source.topic", record.topic),
        ("source.partition", str(record.partition)),
        ("source.offset", str(record.offset)),
    ]
    original = [(k, v) for k, v in (record.headers or []) if not k.startswith(PREFIX)]
    return original + [(PREFIX + k, v.encode()) for k, v in own]


class DeadLetterTopic:
    def __init__(self, bootstrap: str, settings: Settings) -> None:
        self.topic = settings.dlq_topic
        self._options = {
            "bootstrap_servers": bootstrap.split(","),
            "acks": "all",
            "retries": 5,
            "max_request_size": 16 * 1024 * 1024,
            "client_id": "leadengine-dlq",
            **settings.kafka_client_options(),
        }
        self._producer: KafkaProducer | None = None

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(**self._options)
        return self._producer

    def send(self, letters: Sequence[tuple[Any, InvalidEvent]]) -> None:
        def attempt() -> None:
            futures = [
                self.producer.send(
                    self.topic,
                    key=record.key,
                    value=record.value or b"",
                    headers=reason_headers(record, error),
                )
                for record, error in letters
            ]
            self.producer.flush()
            for future in futures:
                future.get(timeout=30)

        retry_transient(attempt, what="send to dead-letter topic")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
