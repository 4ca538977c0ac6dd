"""Fetching that overlaps processing: one thread owns the Kafka consumer, the loop decides.

The fetch thread polls (and so runs the group protocol: joins, rebalances, offset commits),
validates each record into an envelope or the reason it is invalid, and hands partition
batches over a bounded queue. While the loop decides and saves one batch (waiting on
PostgreSQL for much of it), the next ones are on their way and parsed. Group coordination runs
on this thread, never in the loop's hot path.

Exactly-once is kept as before (engine/consumers/kafka.py): positions are stored with the
events; the rebalance callbacks run here but take the loop's turn first, so a batch is never
being stored while its partition is revoked or sought, and batches fetched before a rebalance
(an older generation) are dropped, not stored. The queue holds `depth` batches: memory stays
bounded and a slow database slows the fetching, not the other way round.

While the loop is busy (the queue full), the records of the next polls are coalesced per
partition, up to `coalesce` records (`LEADENGINE_BATCH_SIZE`, events per transaction): a poll
spreads its records over the assigned partitions, so without this a transaction would hold a
share of one poll. An idle loop gets whatever is fetched at once (no wait to fill a batch).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from engine.consumers.retry import retry_transient


@dataclass(frozen=True, slots=True)
class Batch:
    """One partition's records from one poll, parsed, with the consumer's generation then."""

    generation: int
    tp: TopicPartition
    records: Sequence[Any]
    parsed: list[Any]  # an Envelope or an InvalidEvent per record
    highwater: int | None


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Every assigned partition was read to its end (after consecutive empty polls)."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The fetch thread stopped on an error: the loop raises it."""

    error: BaseException


Item = Batch | CaughtUp | Failed


class Fetcher:
    """The consumer's own thread: poll, parse, hand over; commit the loop's offset hints."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        *,
        parse: Callable[[Sequence[Any]], list[Any]],
        generation: Callable[[], int],
        caught_up: Callable[[], bool],
        until_caught_up: bool,
        poll_timeout_ms: int = 500,
        depth: int = 2,
        now_and_then: Callable[[], None] | None = None,
        every_s: float = 10.0,
        coalesce: int = 0,
    ) -> None:
        self.consumer = consumer
        self.parse = parse
        self.generation = generation
        self.caught_up = caught_up
        self.until_caught_up = until_caught_up
        self.poll_timeout_ms = poll_timeout_ms
        #: called on this thread every `every_s` seconds (what needs the consumer: the lag)
        self.now_and_then = now_and_then
        self.every_s = every_s
        #: most records per handed-over batch when coalescing (0: one poll's share, as polled)
        self.coalesce = coalesce
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=depth)
        self.done = threading.Event()
        self._hints: dict[TopicPartition, Any] = {}
        self._hints_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kafka-fetch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.done.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def hint(self, offsets: dict[TopicPartition, Any]) -> None:
        """Offsets to commit to the group (hints only: the store owns the positions)."""
        with self._hints_lock:
            self._hints.update(offsets)

    def get(self, timeout: float) -> Item | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _put(self, item: Item) -> bool:
        while not self.done.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _commit_hints(self) -> None:
        with self._hints_lock:
            hints, self._hints = self._hints, {}
        if hints:
            self.consumer.commit_async(hints)

    def _hand_over(self, pending: dict[tuple[int, TopicPartition], Batch], polled: bool) -> bool:
        """Hand pending batches over: a full one (or, after an empty poll, any) waiting for
        room, the others only if there is room now. False: stopped meanwhile."""
        for key in list(pending):
            batch = pending[key]
            if len(batch.records) >= self.coalesce or not polled:
                if not self._put(batch):
                    return False
            else:
                try:
                    self.queue.put_nowait(batch)
                except queue.Full:
                    continue
            del pending[key]
        return True

    def _run(self) -> None:
        empty_polls = 0
        last = time.monotonic()
        #: polled, not yet handed over: per (generation, partition), in arrival order
        pending: dict[tuple[int, TopicPartition], Batch] = {}
        try:
            while not self.done.is_set():
                self._commit_hints()
                if self.now_and_then is not None and time.monotonic() - last >= self.every_s:
                    last = time.monotonic()
                    self.now_and_then()
                # with records held back, a short poll: they go as soon as there is room
                timeout = min(self.poll_timeout_ms, 50) if pending else self.poll_timeout_ms
                # kafka-python 3 raises a retriable connection error out of `poll` while the
                # broker is down (2.x retried inside): an outage to wait out, not a failure
                polled = retry_transient(
                    partial(self.consumer.poll, timeout_ms=timeout),
                    what="polling the broker",
                    stop=self.done,
                )
                generation = self.generation()  # after the poll: its rebalance, if any, is in
                for tp, records in sorted(polled.items(), key=lambda kv: kv[0].partition):
                    batch = Batch(
                        generation, tp, records, self.parse(records), self.consumer.highwater(tp)
                    )
                    if self.coalesce <= 0:
                        if not self._put(batch):
                            return
                        continue
                    held = pending.pop((generation, tp), None)
                    if held is not None and len(held.records) + len(records) > self.coalesce:
                        if not self._put(held):  # full: it goes first, in partition order
                            return
                    elif held is not None:
                        batch = Batch(
                            generation,
                            tp,
                            [*held.records, *batch.records],
                            [*held.parsed, *batch.parsed],
                            batch.highwater,
                        )
                    pending[(generation, tp)] = batch
                if pending and not self._hand_over(pending, bool(polled)):
                    return
                empty_polls = 0 if polled else empty_polls + 1
                if self.until_caught_up and empty_polls >= 2 and self.caught_up():
                    self._commit_hints()
                    self._put(CaughtUp())
                    return
        except BaseException as exc:  # handed to the loop, which raises it
            self._put(Failed(exc))
