"""The fetch thread coalesces a busy loop's next polls per partition: every record handed over
once, in partition order, never more than `coalesce` per batch, and batches grow past one
poll's share only while the loop is busy. The consumer here is a scripted stand-in for the
poll side of kafka-python's (the broker itself is exercised by tests/integration/test_kafka*)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from engine.consumers.fetch import Batch, CaughtUp, Fetcher

TOPIC = "t"


@dataclass(frozen=True)
class Rec:
    offset: int


class ScriptedConsumer:
    """Each poll returns the next `per_poll` records of every partition, round robin."""

    def __init__(self, partitions: int, records: int, per_poll: int) -> None:
        self.left = {TopicPartition(TOPIC, p): list(range(records)) for p in range(partitions)}
        self.per_poll = per_poll
        self.polls = 0

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Rec]]:
        self.polls += 1
        out: dict[TopicPartition, list[Rec]] = {}
        for tp, offsets in self.left.items():
            take, self.left[tp] = offsets[: self.per_poll], offsets[self.per_poll :]
            if take:
                out[tp] = [Rec(o) for o in take]
        if not out:
            time.sleep(timeout_ms / 1000)
        return out

    def highwater(self, tp: TopicPartition) -> int:
        return 0

    def commit_async(self, offsets: Any) -> None:
        pass

    def done(self) -> bool:
        return not any(self.left.values())


def _drain(consumer: ScriptedConsumer, coalesce: int, pause_s: float) -> list[Batch]:
    fetcher = Fetcher(
        consumer,  # type: ignore[arg-type]
        parse=lambda records: [r.offset for r in records],
        generation=lambda: 1,
        caught_up=consumer.done,
        until_caught_up=True,
        poll_timeout_ms=20,
        coalesce=coalesce,
    )
    fetcher.start()
    batches: list[Batch] = []
    try:
        while True:
            item = fetcher.get(timeout=5)
            assert item is not None, "the fetch thread stalled"
            if isinstance(item, CaughtUp):
                return batches
            assert isinstance(item, Batch)
            batches.append(item)
            time.sleep(pause_s)  # the loop deciding and saving
    finally:
        fetcher.stop()


def _check_complete(batches: list[Batch], partitions: int, records: int, coalesce: int) -> None:
    for p in range(partitions):
        offsets = [r.offset for b in batches if b.tp.partition == p for r in b.records]
        assert offsets == list(range(records))  # each once, in order
    for b in batches:
        assert b.parsed == [r.offset for r in b.records]  # parsed stays beside its record
        assert len(b.records) <= coalesce


def test_a_busy_loop_gets_batches_coalesced_per_partition() -> None:
    consumer = ScriptedConsumer(partitions=4, records=400, per_poll=10)
    batches = _drain(consumer, coalesce=100, pause_s=0.02)
    _check_complete(batches, 4, 400, 100)
    assert max(len(b.records) for b in batches) == 100  # grown past one poll's share (10)
    assert len(batches) < 4 * 400 / 10 / 2


def test_without_coalescing_a_batch_is_one_polls_share() -> None:
    consumer = ScriptedConsumer(partitions=3, records=60, per_poll=10)
    batches = _drain(consumer, coalesce=0, pause_s=0.0)
    _check_complete(batches, 3, 60, 10)
    assert all(len(b.records) == 10 for b in batches)
