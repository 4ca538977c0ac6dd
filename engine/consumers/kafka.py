"""Kafka ingestion with exactly-once effects.

The store, not Kafka, owns the position: each partition batch's events and its last offset (an
eventsourcing tracking record named `kafka.<topic>.<partition>`) commit in one PostgreSQL
transaction. On assignment the consumer seeks to the stored position + 1, so a crash anywhere
replays at most the uncommitted batch, and a replayed offset is refused by the tracking check.
Invalid records go to the dead-letter topic with the reason in headers, and so do records
whose (source, id) is stored with other content (conflicts); their offsets are tracked like the
rest. A batch that loses a version conflict to another member is redone on fresh reads
(`store_racing`; `engine.contention` makes it wait its turn after that). A database outage is
retried with backoff: never skipped, never dead-lettered.

A fetch thread (engine/consumers/fetch.py) owns the consumer: the next batches are fetched and
parsed while this one is decided and saved, and the group protocol runs off the hot loop.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import Tracking
from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from structlog.stdlib import BoundLogger

from engine import metrics
from engine.consumers.deadletter_topic import DeadLetterTopic
from engine.consumers.fetch import Batch, CaughtUp, Failed, Fetcher
from engine.consumers.retry import RaceStats, retry_transient, store_racing
from engine.domain.contract import Envelope, parse_event
from engine.domain.errors import InvalidEvent
from engine.logs import get_logger
from engine.services.application import IngestResult, LeadEngine
from engine.settings import Settings

log = get_logger("leadengine.consume")


def tracking_name(topic: str, partition: int) -> str:
    return f"kafka.{topic}.{partition}"


@dataclass
class ConsumeStats:
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # forgotten leads' personal data under privacy.after_erasure: drop
    dead_lettered: int = 0
    conflicts: int = 0  # a stored event's (source, id) with other content: dead-lettered
    unknown_fields: int = 0  # fields the contract did not know, kept (rules `contract`)
    batches: int = 0
    retries: int = 0
    race: RaceStats = field(default_factory=RaceStats)  # batches another member stored first
    started: float = field(default_factory=time.monotonic)
    first_record: float | None = None  # when the first record arrived (after the group join)
    busy_s: float = 0.0  # seconds spent deciding and storing batches (not waiting for records)
    assignments: int = 0  # partition assignments received (1 without a rebalance)
    dropped: int = 0  # batches fetched before a rebalance, dropped unstored (fetched again)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "records": self.records,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "dead_lettered": self.dead_lettered,
            "conflicts": self.conflicts,
            "unknown_fields": self.unknown_fields,
            "batches": self.batches,
            "retries": self.retries,
            **self.race.as_dict(),
            "busy_s": round(self.busy_s, 3),
            "assignments": self.assignments,
            "dropped_batches": self.dropped,
            "seconds": round(elapsed, 2),
            "records_per_s": round(self.records / elapsed, 1),
        }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaIngestor) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.owner.on_revoked(revoked)

    def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.owner.on_assigned(assigned)


class KafkaIngestor:
    """Consumes the lead-events topic into the engine, one transaction per partition batch."""

    def __init__(
        self,
        app: LeadEngine,
        settings: Settings,
        *,
        bootstrap: str | None = None,
        consumer_options: dict[str, Any] | None = None,
        on_batch: Callable[[ConsumeStats], None] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.topic = settings.kafka_topic
        self.bootstrap = bootstrap or settings.kafka_bootstrap_servers
        if not self.bootstrap:
            raise ValueError("no Kafka bootstrap servers configured")
        self.positions: dict[TopicPartition, int] = {}
        self.stats = ConsumeStats()
        self.on_batch = on_batch
        options = {
            "bootstrap_servers": self.bootstrap.split(","),
            "group_id": settings.kafka_group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": settings.batch_size,
            "session_timeout_ms": settings.kafka_session_timeout_ms,
            "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms,
            "fetch_max_bytes": 64 * 1024 * 1024,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            "client_id": "leadengine-consumer",
            **settings.kafka_client_options(),
            **(consumer_options or {}),
        }
        self.consumer = KafkaConsumer(**options)
        self.dlq = DeadLetterTopic(self.bootstrap, settings)
        self._last_report = time.monotonic()
        #: the loop's turn: a rebalance (on the fetch thread) waits for the batch being stored
        self._turn = threading.RLock()
        #: bumped on every rebalance: batches fetched before it are dropped, not stored
        self.generation = 0
        self._fetcher: Fetcher | None = None
        self._lag: dict[int, int] = {}

    # -- group membership ---------------------------------------------------------------------

    def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Seek every new partition to the position the store holds, + 1."""
        with self._turn:
            self.generation += 1
            self.stats.assignments += 1
            self._on_assigned(assigned)

    def _on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self.app.clear_cache()  # another member may have written these leads meanwhile
        for tp in assigned:
            name = tracking_name(tp.topic, tp.partition)
            stored = retry_transient(
                functools.partial(self.app.max_position, name),
                what="read stored position",
                on_retry=self._count_retry,
            )
            if stored is None:
                self.consumer.seek_to_beginning(tp)
                self.positions[tp] = -1
            else:
                self.consumer.seek(tp, stored + 1)
                self.positions[tp] = stored
            log.info(
                "partition assigned", topic=tp.topic, partition=tp.partition, stored_position=stored
            )

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def on_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        with self._turn:  # after the batch being stored, if any; none starts meanwhile
            self.generation += 1
            for tp in revoked:
                self.positions.pop(tp, None)
                log.info("partition revoked", topic=tp.topic, partition=tp.partition)

    # -- the loop -----------------------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until_caught_up: bool = False,
        poll_timeout_ms: int = 500,
        report_every: float = 10.0,
    ) -> ConsumeStats:
        stop = stop or threading.Event()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        fetcher = self._fetcher = Fetcher(
            self.consumer,
            parse=self.parse,
            generation=lambda: self.generation,
            caught_up=self.caught_up,
            until_caught_up=until_caught_up,
            poll_timeout_ms=poll_timeout_ms,
            now_and_then=self._note_lag,
            every_s=report_every,
            coalesce=self.settings.batch_size,
        )
        fetcher.start()
        try:
            while not stop.is_set():
                item = fetcher.get(timeout=0.2)
                if item is None and not fetcher.alive and fetcher.queue.empty():
                    raise RuntimeError("the Kafka fetch thread stopped without a reason")
                if isinstance(item, CaughtUp):
                    break
                if isinstance(item, Failed):
                    raise item.error
                if isinstance(item, Batch):
                    with self._turn:
                        if item.generation == self.generation:
                            self.process(item.tp, item.records, item.parsed, item.highwater)
                        else:  # fetched before a rebalance: read again from the stored position
                            self.stats.dropped += 1
                if time.monotonic() - self._last_report >= report_every:
                    self.report()
        finally:
            fetcher.stop()
            self._fetcher = None
            self.close()
        return self.stats

    def parse(self, records: Sequence[Any]) -> list[Envelope | InvalidEvent]:
        """Each record's envelope, or why it is invalid (on the fetch thread)."""
        parsed: list[Envelope | InvalidEvent] = []
        for record in records:
            try:
                if record.value is None:
                    raise InvalidEvent("empty record (tombstone)", expected="a CloudEvent")
                parsed.append(
                    parse_event(
                        record.value,
                        max_bytes=self.settings.max_event_bytes,
                        unknown_fields=self.app.rules.contract.unknown_fields,
                    )
                )
            except InvalidEvent as exc:
                parsed.append(exc)
        return parsed

    def _note_lag(self) -> None:
        """The lag, for `report` (on the fetch thread, which owns the consumer)."""
        self._lag = self.lag()

    def caught_up(self) -> bool:
        """Lag is zero: partitions assigned, each read to its end, and polls came back empty.

        `end_offsets` alone is not trusted (some brokers report the start of the last batch);
        the caller only asks after consecutive empty polls.
        """
        assignment = self.consumer.assignment()
        if not assignment:
            return False
        ends = self.consumer.end_offsets(list(assignment))
        return all(self.consumer.position(tp) >= ends[tp] for tp in assignment)

    def lag(self) -> dict[int, int]:
        assignment = list(self.consumer.assignment())
        if not assignment:
            return {}
        ends = self.consumer.end_offsets(assignment)
        return {tp.partition: max(0, ends[tp] - self.consumer.position(tp)) for tp in assignment}

    def report(self) -> None:
        """Progress; while the fetch thread runs, the lag it saw last (the consumer is its)."""
        self._last_report = time.monotonic()
        lag = self._lag if self._fetcher is not None else self.lag()
        log.info("progress", **self.stats.as_dict(), lag=lag, **self._lock_times())

    def _lock_times(self) -> dict[str, Any]:
        times = getattr(self.app.recorder, "lock_times", None)
        return times.as_dict() if times is not None else {}

    def close(self) -> None:
        try:
            self.consumer.close()  # leaves the group
        finally:
            self.dlq.close()

    # -- one partition batch ------------------------------------------------------------------

    def process(
        self,
        tp: TopicPartition,
        records: Sequence[Any],
        parsed: Sequence[Envelope | InvalidEvent] | None = None,
        highwater: int | None = None,
    ) -> None:
        """Validate (unless the fetch thread did: `parsed`), dead-letter the bad, record the
        good and the position in one transaction."""
        if parsed is None:
            parsed = self.parse(records)
        position = self.positions.get(tp, -1)
        pairs = [(r, p) for r, p in zip(records, parsed, strict=True) if r.offset > position]
        if not pairs:
            return
        fresh = [r for r, _ in pairs]
        if self.stats.first_record is None:
            self.stats.first_record = time.monotonic()
        started = time.perf_counter()
        bound = log.bind(
            topic=tp.topic,
            partition=tp.partition,
            first_offset=fresh[0].offset,
            last_offset=fresh[-1].offset,
        )
        good: list[Envelope] = []
        good_records: list[Any] = []
        bad: list[tuple[Any, InvalidEvent]] = []
        for record, outcome in pairs:
            if isinstance(outcome, InvalidEvent):
                bad.append((record, outcome))
            else:
                good.append(outcome)
                good_records.append(record)
        if bad:
            self.dlq.send(bad)
            for record, error in bad:
                bound.warning(
                    "dead-lettered",
                    offset=record.offset,
                    error=error.describe(),
                    dlq=self.dlq.topic,
                )
        last = fresh[-1].offset
        conflicts = self._commit(tp, good, good_records, last, bound)
        self.positions[tp] = last
        self.stats.records += len(fresh)
        self.stats.dead_lettered += len(bad) + conflicts
        self.stats.batches += 1
        self.stats.busy_s += time.perf_counter() - started
        self._measure(tp, fresh, len(bad) + conflicts, last, started, highwater)
        hint = {tp: OffsetAndMetadata(last + 1, "", -1)}  # a hint only: the store owns it
        if self._fetcher is not None:
            self._fetcher.hint(hint)  # the fetch thread owns the consumer
        else:
            self.consumer.commit_async(hint)
        bound.debug("batch committed", records=len(fresh), dead_lettered=len(bad))
        if self.on_batch:
            self.on_batch(self.stats)

    def _measure(
        self,
        tp: TopicPartition,
        fresh: Sequence[Any],
        bad: int,
        last: int,
        started: float,
        high: int | None = None,
    ) -> None:
        topic = tp.topic
        metrics.consumer_batch_seconds.labels(topic).observe(time.perf_counter() - started)
        metrics.consumer_records.labels(topic).inc(len(fresh))
        metrics.consumer_dead_lettered.labels(topic).inc(bad)
        if high is None and self._fetcher is None:
            high = self.consumer.highwater(tp)
        if high is not None:
            metrics.consumer_lag.labels(topic, str(tp.partition)).set(max(0, high - (last + 1)))

    def _commit(
        self,
        tp: TopicPartition,
        good: list[Envelope],
        records: list[Any],
        last: int,
        bound: BoundLogger,
    ) -> int:
        """Store the batch and its position; the conflicts it refused (how many are returned)
        go to the dead-letter topic first, acknowledged before the position commits."""
        name = tracking_name(tp.topic, tp.partition)
        sent: set[int] = set()  # offsets dead-lettered by an earlier attempt of this batch

        def keep_conflicts(result: IngestResult) -> None:
            letters = [(records[i], e) for i, e in result.rejected if records[i].offset not in sent]
            if letters:
                self.dlq.send(letters)
                sent.update(record.offset for record, _ in letters)
            for i, error in result.rejected:
                bound.warning(
                    "conflict dead-lettered",
                    offset=records[i].offset,
                    error=error.describe(),
                    dlq=self.dlq.topic,
                )

        def settled() -> bool:  # another member stored this batch during a rebalance
            stored = self.app.max_position(name)
            return stored is not None and stored >= last

        result = store_racing(
            lambda: self.app.ingest(
                good, tracking=Tracking(name, last), keep_rejected=keep_conflicts
            ),
            stats=self.stats.race,
            what="record batch",
            log=bound,
            settled=settled,
            on_retry=self._count_retry,
        )
        if result is None:
            return 0
        self.stats.accepted += result.accepted
        self.stats.duplicates += result.duplicates
        self.stats.ignored += result.ignored
        self.stats.conflicts += result.conflicts
        self.stats.unknown_fields += result.unknown_fields
        metrics.consumer_unknown_fields.labels(tp.topic).inc(result.unknown_fields)
        metrics.consumer_accepted.labels(tp.topic).inc(result.accepted)
        metrics.consumer_duplicates.labels(tp.topic).inc(result.duplicates)
        metrics.consumer_ignored.labels(tp.topic).inc(result.ignored)
        metrics.consumer_conflicts.labels(tp.topic).inc(result.conflicts)
        return result.conflicts
