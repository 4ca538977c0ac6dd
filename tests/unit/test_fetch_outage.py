"""kafka-python 3 raises a retriable connection error out of `poll` while the broker is down
(2.x retried inside it): the fetch thread waits the outage out, counts it, and hands over every
record once, in order. A non-retriable error still ends the fetch. The consumer is a scripted
stand-in for kafka-python's poll side (tests/integration/test_broker_outage.py cuts a real
broker's connection)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, UnsupportedVersionError

from engine import metrics
from engine.consumers import retry
from engine.consumers.fetch import Batch, CaughtUp, Failed, Fetcher
from tests.unit.test_fetch_coalesce import ScriptedConsumer


class Flaky(ScriptedConsumer):
    """The scripted consumer whose polls number `down` raise `error` instead of returning."""

    def __init__(self, down: set[int], error: Exception) -> None:
        super().__init__(partitions=2, records=30, per_poll=5)
        self.down, self.error, self.calls = down, error, 0

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        self.calls += 1
        if self.calls in self.down:
            raise self.error
        return super().poll(timeout_ms)


def _fetch(consumer: Flaky) -> list[object]:
    fetcher = Fetcher(
        consumer,  # type: ignore[arg-type]
        parse=lambda records: [r.offset for r in records],
        generation=lambda: 1,
        caught_up=consumer.done,
        until_caught_up=True,
        poll_timeout_ms=20,
    )
    fetcher.start()
    items: list[object] = []
    try:
        while True:
            item = fetcher.get(timeout=30)
            assert item is not None, "the fetch thread stalled"
            items.append(item)
            if isinstance(item, CaughtUp | Failed):
                return items
    finally:
        fetcher.stop()


def test_a_broker_outage_inside_poll_is_waited_out_and_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(retry.OUTAGES, "kafka broker", retry.Outage("kafka broker"))
    before = metrics.retries.labels("kafka broker")._value.get()
    consumer = Flaky({3, 4, 5}, KafkaConnectionError("111 ECONNREFUSED"))
    items = _fetch(consumer)
    assert isinstance(items[-1], CaughtUp)
    batches = [i for i in items if isinstance(i, Batch)]
    for p in (0, 1):
        offsets = [r.offset for b in batches if b.tp.partition == p for r in b.records]
        assert offsets == list(range(30))
    assert metrics.retries.labels("kafka broker")._value.get() - before == 3
    assert retry.OUTAGES["kafka broker"].started is None  # ended when a poll came back


def test_an_error_that_is_not_an_outage_still_ends_the_fetch() -> None:
    consumer = Flaky({2}, UnsupportedVersionError("no"))
    items = _fetch(consumer)
    assert isinstance(items[-1], Failed)
    assert isinstance(items[-1].error, UnsupportedVersionError)
