"""Publishing CloudEvents to the lead-events topic, for upstream Python services and tests.

    from engine.kafka.publish import Publisher
    with Publisher("kafka:9092", topic="lead-events") as pub:
        pub.publish({"specversion": "1.0", "id": "...", "type": "touch.page_viewed", ...})

The key is the event's `subject` (the lead key), so one lead's events stay in order within a
partition. Events are validated against the contract first unless `validate=False`; an
invalid one (whatever its bytes) raises `InvalidEvent` and is not sent.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from engine.domain import limits
from engine.domain.contract import parse_event, validate_event
from engine.domain.errors import InvalidEvent


class Publisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = "lead-events",
        validate: bool = True,
        **options: object,
    ) -> None:
        self.topic = topic
        self.validate = validate
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=10,
            batch_size=256 * 1024,
            max_in_flight_requests_per_connection=1,
            client_id="leadengine-publisher",
            **options,
        )
        self.sent = 0

    def publish(self, event: dict[str, Any] | bytes) -> None:
        """Send one event (a dict or its JSON bytes); asynchronous until `flush()`."""
        subject: object
        if isinstance(event, bytes):
            subject = parse_event(event).subject if self.validate else _subject(event)
            value = event
        else:
            if self.validate:
                validate_event(event)
            subject = event.get("subject")
            value = json.dumps(event).encode()
        if not isinstance(subject, str) or not subject or limits.printable(subject) != subject:
            raise InvalidEvent(
                "no subject to use as the key", field="subject", expected="the lead key"
            )
        self.producer.send(self.topic, key=subject.encode(), value=value)
        self.sent += 1

    def publish_many(self, events: Iterable[dict[str, Any] | bytes]) -> int:
        for event in events:
            self.publish(event)
        self.flush()
        return self.sent

    def flush(self) -> None:
        self.producer.flush()

    def close(self) -> None:
        self.producer.flush()
        self.producer.close(timeout=10)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # the error in hand is what the caller must see, not a second one from closing
        with contextlib.suppress(Exception):
            self.producer.close(timeout=5)


def _subject(raw: bytes) -> object:
    """The `subject` of an unvalidated record, or InvalidEvent when it cannot be read."""
    try:
        text = limits.decode_text(raw)
        limits.check_shape(text)
        obj = limits.loads(text)
    except InvalidEvent:
        raise
    except Exception as exc:  # malformed JSON, or anything else json.loads can raise
        raise InvalidEvent(f"malformed JSON ({exc})", expected="one JSON object") from None
    return obj.get("subject") if isinstance(obj, dict) else None


def ensure_topic(bootstrap: str, topic: str, partitions: int = 4, **options: object) -> bool:
    """Create `topic` if it does not exist; True when it was created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), **options)
    try:
        if topic in admin.list_topics():
            return False
        admin.create_topics([NewTopic(topic, partitions, 1)])
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        admin.close()
