"""Replay the Kafka dead-letter topic (`<topic>.dlq`) into the main topic after a fix.

Each dead letter's original bytes go back to the main topic with the original key and the
original headers (the `leadengine.*` reason headers dropped), acknowledged (acks=all) before the
position moves. The position is kept in the store (tracking records named
`dlq-replay.<dlq topic>.<partition>`: the last offset handled), so a second run starts where the
first stopped and does not send again; a crash can at worst send a batch twice, and a record
sent twice is stored once (event identity is (source, id)). Records that still fail the event
contract are not sent (they would only come back) and are counted; the position moves past them,
so replaying them after a later fix takes `--from-start`. The dead-letter topic itself is never
changed: its retention is the broker's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from engine.consumers.deadletter_topic import PREFIX, Record
from engine.domain.contract import parse_event
from engine.domain.errors import InvalidEvent, LeadEngineError
from engine.services.application import LeadEngine
from engine.settings import Settings


def position_name(dlq_topic: str, partition: int) -> str:
    return f"dlq-replay.{dlq_topic}.{partition}"


@dataclass
class TopicReplayReport:
    dlq_topic: str
    topic: str
    read: int = 0  # dead letters read past the stored position
    sent: int = 0  # re-published to the main topic (with --dry-run: would be)
    still_invalid: int = 0  # fail the event contract still: not sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "topic": self.topic,
            "read": self.read,
            "sent": self.sent,
            "still_invalid": self.still_invalid,
        }


def _original_headers(record: Record) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in (record.headers or []) if not k.startswith(PREFIX)]


def replay_topic(
    app: LeadEngine,
    settings: Settings,
    bootstrap: str,
    *,
    dry_run: bool = False,
    from_start: bool = False,
    progress: Callable[[TopicReplayReport], None] | None = None,
    stall_seconds: float = 60.0,
) -> TopicReplayReport:
    """Re-publish the dead-letter topic's records from the stored position to its end."""
    dlq, topic = settings.dlq_topic, settings.kafka_topic
    report = TopicReplayReport(dlq_topic=dlq, topic=topic)
    options = {"bootstrap_servers": bootstrap.split(","), **settings.kafka_client_options()}
    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.batch_size,
        client_id="leadengine-dlq-replay",
        **options,
    )
    producer: KafkaProducer | None = None
    try:
        partitions = sorted(consumer.partitions_for_topic(dlq) or ())
        tps = [TopicPartition(dlq, p) for p in partitions]
        if not tps:
            return report
        consumer.assign(tps)
        ends = {tp: int(o) for tp, o in consumer.end_offsets(tps).items()}
        for tp in tps:
            stored = None if from_start else app.max_position(position_name(dlq, tp.partition))
            if stored is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored + 1)
        pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        if not dry_run and pending:
            producer = KafkaProducer(
                acks="all", retries=5, max_request_size=16 * 1024 * 1024, **options
            )
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > stall_seconds:
                raise LeadEngineError(
                    f"replay of {dlq} stalled: no record for {stall_seconds:.0f} s before the "
                    f"end offsets; {report.sent} sent and their positions stored: run it again "
                    "to continue"
                )
            for tp, records in consumer.poll(timeout_ms=1000).items():
                last_progress = time.monotonic()
                records = [r for r in records if r.offset < ends[tp]]
                if not records:
                    continue
                _replay_batch(app, producer, tp, records, topic, settings, report)
                if progress:
                    progress(report)
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()
        if producer is not None:
            producer.close(timeout=5)
    return report


def _replay_batch(
    app: LeadEngine,
    producer: KafkaProducer | None,
    tp: TopicPartition,
    records: list[Any],
    topic: str,
    settings: Settings,
    report: TopicReplayReport,
) -> None:
    """Send a partition batch's valid records, wait for the acks, then store the position."""
    futures = []
    for record in records:
        report.read += 1
        try:
            parse_event(record.value or b"", max_bytes=settings.max_event_bytes)
        except InvalidEvent:
            report.still_invalid += 1
            continue
        report.sent += 1
        if producer is not None:
            futures.append(
                producer.send(
                    topic,
                    key=record.key,
                    value=record.value,
                    headers=_original_headers(record),
                )
            )
    if producer is None:  # dry run: nothing sent, the position stays
        return
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    name, last = position_name(tp.topic, tp.partition), records[-1].offset
    stored = app.max_position(name)
    if stored is None or last > stored:  # --from-start re-reads below it: it never moves back
        app.process_recorder.insert_events([], tracking=Tracking(name, last))
