"""The relay: publishes the engine's decisions to Kafka, from the outbox.

Each decision's record is written with its event (engine/postgres/outbox.py), so the relay reads
finished records past its position, in log order, and hands them to the producer (acks=all,
idempotence, linger/batch). Once the broker has acknowledged every record of a batch (`flush`)
the new position commits in `relay_tracking` (one row per topic) with each partition's next
offset, guarded by the old position so two relays on one topic cannot both move it.

A crash between the acknowledgement and that commit leaves records in the topic past the
committed offsets: before it publishes again the relay reads that tail and skips the ids it
holds, so a decision is published once (at most the tail a relay wrote before its first commit
of a topic is read from the topic's start). Below `outbox_start` (events recorded before
migration 15) the relay decodes the log as before: the lead events' decisions are decoded
and folded (facts only when an MQL needs the whole lead for its reasons).

A lead's decisions go to one partition, chosen from its id (never from its key, which turns
into the pseudonym when the lead is forgotten), so a consumer sees them in order.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from psycopg import sql
from psycopg.types.json import Jsonb

from engine import metrics
from engine.aggregates.lead import Lead
from engine.domain.decisions import TYPES, encode, to_cloudevent
from engine.domain.errors import LeadEngineError
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules
from engine.logs import get_logger
from engine.postgres import outbox
from engine.postgres.db import Database
from engine.services.application import EVENTS_TABLE, LeadEngine

TABLE = "relay_tracking"  # made by migration 12, `offsets` by 15 (engine/postgres/migrations.py)
#: The part of a stored event's topic that names a Lead event (others are skipped undecoded).
LEAD_TOPIC = "engine.aggregates.lead:Lead."

#: The decision events' class names (engine/domain/decisions.py): the lead events decoded at once.
DECISION_NAMES = frozenset(cls.__qualname__.removeprefix("Lead.") for cls in TYPES)
#: Undecoded events a lead may hold before they are folded anyway (bounds the relay's memory).
FOLD_AFTER = 64

log = get_logger("engine.relay")


@dataclass
class _Tail:
    """One lead as the relay knows it: its key now, the last version seen, the lead folded so
    far and the events since (stored or decoded); `pending` None: fold by reading the store."""

    key: str
    version: int
    lead: Lead | None = None
    pending: list[Any] | None = field(default_factory=list)

    def add(self, item: Any, version: int) -> None:
        self.version = version
        if self.pending is not None:
            self.pending.append(item)


class RelayMoved(LeadEngineError):
    """Another relay moved this topic's position: two relays on one topic."""


def positions(db: Database) -> dict[str, int]:
    """Each relayed topic's position in the log."""
    query = sql.SQL("SELECT topic, position FROM {}").format(sql.Identifier(db.schema, TABLE))
    with db.connect() as conn:
        return {str(t): int(p) for t, p in conn.execute(query).fetchall()}


def status(db: Database) -> list[dict[str, Any]]:
    """Each relayed topic: position, updated_at and its last batch (for `leadengine status`)."""
    query = sql.SQL(
        "SELECT topic, position, batch_published, updated_at FROM {} ORDER BY topic"
    ).format(sql.Identifier(db.schema, TABLE))
    with db.connect() as conn:
        rows = conn.execute(query).fetchall()
    return [
        {
            "topic": t,
            "position": int(p),
            "last_batch_published": int(n),
            "updated_at": u.isoformat(timespec="seconds"),
        }
        for t, p, n, u in rows
    ]


#: what a send becomes: (CloudEvent id, key, value, lead id)
Outgoing = tuple[str, str, bytes, str]
#: producer settings a tail reader (a consumer) shares: where the broker is and how to log in
READER_OPTIONS = ("bootstrap_servers", "security_protocol", "ssl_", "sasl_", "api_version")


#: how long a record may wait for the broker's acknowledgement (the producer retries meanwhile)
SEND_TIMEOUT = 120.0


@dataclass
class _Batch:
    """A batch handed to the producer, its position not committed yet."""

    old: int
    last: int
    futures: list[Any]
    started: float


class Relay:
    """Publishes the decisions of `app`'s log to `topic` through `producer`; with
    `from_log` every decision is decoded from the log (the path before the outbox, kept
    for events older than migration 15 and for comparison)."""

    def __init__(
        self,
        app: LeadEngine,
        db: Database,
        producer: KafkaProducer,
        topic: str,
        rules: Rules,
        *,
        batch_size: int = 5000,
        cache_size: int = 20_000,
        from_log: bool = False,
    ) -> None:
        self.app = app
        self.from_log = from_log
        self.db = db
        self.producer = producer
        self.topic = topic
        self.rules = rules
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, _Tail] = OrderedDict()
        self._partitions: int | None = None
        self._table = sql.Identifier(db.schema, TABLE)
        self._conn: psycopg.Connection[Any] | None = None
        self._rconn: psycopg.Connection[Any] | None = None
        self._complete_from: int | None = None
        #: ids already in the topic past the committed offsets (a crash before the commit)
        self._skip: set[str] | None = None
        self._offsets: dict[int, int] = {}
        self._read_head = sql.SQL("SELECT max(notification_id) FROM {}").format(
            sql.Identifier(db.schema, EVENTS_TABLE)
        )
        # the bytes to send as bytea (read in binary: no text decoding and encoding); no upper
        # bound, so the planner walks the primary key (with one, on a table not analysed yet,
        # it sorted on disk): what is visible is a prefix of the log anyway
        self._read_outbox = sql.SQL(
            "SELECT notification_id, lead_id::text || ':' || version, key, "
            "convert_to(value, 'UTF8'), lead_id::text FROM {} WHERE notification_id > %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(db.schema, outbox.TABLE))

    def position(self) -> int:
        """How far the log has been relayed to this topic (0: nothing yet)."""
        row = (
            self._connection()
            .execute(
                sql.SQL("SELECT position FROM {} WHERE topic = %s").format(self._table),
                (self.topic,),
            )
            .fetchone()
        )
        return int(row[0]) if row else 0

    def reset(self) -> None:
        """Start this topic again from the first event (`relay --from-start`): what the topic
        holds now counts as published by someone else, so all of it is published again."""
        ends = self._end_offsets()
        with self.db.connect() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (topic, position, offsets) VALUES (%s, 0, %s) "
                    "ON CONFLICT (topic) DO UPDATE SET position = 0, offsets = excluded.offsets, "
                    "updated_at = now()"
                ).format(self._table),
                (self.topic, Jsonb({str(p): o for p, o in ends.items()})),
            )
        self._cache.clear()
        self._skip = None

    def lag(self) -> int:
        head = self.app.recorder.max_notification_id() or 0
        return max(0, head - self.position())

    def run(
        self,
        *,
        until_caught_up: bool = True,
        stop: Callable[[], bool] | None = None,
        idle_sleep: float = 0.2,
    ) -> int:
        """Relay batches until caught up (or, if not `until_caught_up`, until `stop()`);
        returns how many decisions were published.

        The next batch is read (by a thread of its own, on a connection of its own) while
        this one is sent and acknowledged: the database's round trips overlap the producer's
        work. Positions still commit one batch after the other."""
        published = 0
        position = self.position()
        with ThreadPoolExecutor(1, thread_name_prefix="relay-read") as reader:
            ahead = reader.submit(self._read, position)
            try:
                while not (stop and stop()):
                    last, outgoing = ahead.result()
                    if last == position:
                        if until_caught_up:
                            break
                        time.sleep(idle_sleep)
                        ahead = reader.submit(self._read, position)
                        continue
                    ahead = reader.submit(self._read, last)
                    published += self._publish(position, last, outgoing)
                    position = last
            except BaseException:
                self._skip = None  # what reached the broker is read back before the next batch
                raise
        return published

    def run_batch(self, position: int) -> tuple[int, int, int]:
        """Publish the decisions of the next batch past `position`, wait for the broker's
        acknowledgement, then commit the new position. (notifications, published, position)"""
        try:
            last, outgoing = self._read(position)
            sent = self._publish(position, last, outgoing) if last != position else 0
        except BaseException:
            self._skip = None
            raise
        return last - position, sent, last

    def _read(self, position: int) -> tuple[int, list[Outgoing]]:
        """The records past `position` and the position after them (`position`: none yet)."""
        try:
            if self._complete_from is None:
                self._complete_from = outbox.complete_from(self._reader_conn(), self.db.schema)
            if position + 1 < self._complete_from or self.from_log:
                stop = None if self.from_log else self._complete_from - 1
                return self._log_batch(position, stop)
            return self._outbox_batch(position)
        except psycopg.OperationalError:
            if self._rconn is not None:
                self._rconn.close()  # the next read reconnects (after the caller's retry)
            raise

    def _publish(self, old: int, last: int, outgoing: list[Outgoing]) -> int:
        """Hand the records to the producer, wait until the broker acknowledged them all,
        commit the position `last`; returns how many were sent."""
        if self._skip is None:
            self._recover()
        batch = _Batch(old, last, self._send(outgoing), time.perf_counter())
        self.producer.flush(timeout=SEND_TIMEOUT)
        return self._settle(batch)

    def _settle(self, batch: _Batch) -> int:
        """Wait until the broker acknowledged every record of `batch`, then commit its
        position with each partition's next offset; returns how many records it sent."""
        for future in batch.futures:
            if not future.is_done:
                future.get(timeout=SEND_TIMEOUT)
            if future.failed():
                raise future.exception  # what the broker refused: the position stays
            meta = future.value
            if meta.offset >= self._offsets.get(meta.partition, 0):
                self._offsets[meta.partition] = meta.offset + 1
        sent = len(batch.futures)
        seconds = time.perf_counter() - batch.started
        self._commit(batch.old, batch.last, batch.last - batch.old, sent, seconds)
        metrics.relay_published.labels(topic=self.topic).inc(sent)
        metrics.relay_batch_seconds.observe(seconds)
        metrics.relay_position.labels(topic=self.topic).set(batch.last)
        return sent

    def _outbox_batch(self, position: int) -> tuple[int, list[Outgoing]]:
        """The outbox's records past `position`, and the new position: the last record's
        notification id when the batch is full, else the log's head as read before the
        records. Both are sound because what is visible of the log is a prefix (the recorder
        holds the events table's lock until its transaction, records included, commits)."""
        conn = self._reader_conn()
        head = conn.execute(self._read_head).fetchone()
        rows = conn.execute(self._read_outbox, (position, self.batch_size), binary=True).fetchall()
        last = int(rows[-1][0]) if rows else position
        if len(rows) < self.batch_size:
            last = max(last, int((head and head[0]) or 0))
        return last, [  # the id as engine.domain.decisions.decision_id makes it
            (ident, key, value, lead_id) for _n, ident, key, value, lead_id in rows
        ]

    def _log_batch(self, position: int, stop: int | None) -> tuple[int, list[Outgoing]]:
        """Decisions recorded before the outbox existed: decoded from the log."""
        notifications = self.app.recorder.select_notifications(
            start=position + 1, limit=self.batch_size, stop=stop
        )
        if not notifications:
            return position, []
        lead_events = [n for n in notifications if n.topic.startswith(LEAD_TOPIC)]
        self.app.sealed_mapper.prefetch_keys(lead_events)
        docs = [doc for doc in map(self._decision, lead_events) if doc is not None]
        outgoing = [
            (str(d["id"]), str(d["subject"]), encode(d).encode(), str(d["data"]["lead_id"]))
            for d in docs
        ]
        return notifications[-1].id, outgoing

    def _send(self, outgoing: list[Outgoing]) -> list[Any]:
        """Hand the records to the producer (it batches them), all but the ids the topic
        already holds."""
        skip = self._skip
        futures = []
        for ident, key, value, lead_id in outgoing:
            if skip and ident in skip:
                skip.discard(ident)
                continue
            futures.append(
                self.producer.send(
                    self.topic, key=key.encode(), value=value, partition=self.partition_of(lead_id)
                )
            )
        return futures

    def _recover(self) -> None:
        """Read what the topic holds past the committed offsets (published, never committed:
        a crash or a failure between the broker's ack and the commit) and skip those ids."""
        self.producer.flush(timeout=SEND_TIMEOUT)  # records still in hand reach the topic first
        row = (
            self._connection()
            .execute(
                sql.SQL("SELECT offsets FROM {} WHERE topic = %s").format(self._table),
                (self.topic,),
            )
            .fetchone()
        )
        committed = {int(p): int(o) for p, o in ((row and row[0]) or {}).items()}
        self._offsets = dict(committed)
        skip: set[str] = set()
        reader = self._reader()
        try:
            parts = [TopicPartition(self.topic, p) for p in self._partition_ids(reader)]
            ends = reader.end_offsets(parts) if parts else {}
            todo = {tp: end for tp, end in ends.items() if end > committed.get(tp.partition, 0)}
            if todo:
                reader.assign(list(todo))
                for tp in todo:
                    reader.seek(tp, committed.get(tp.partition, 0))
                deadline = time.monotonic() + 60
                while any(reader.position(tp) < end for tp, end in todo.items()):
                    if time.monotonic() > deadline:
                        raise LeadEngineError(
                            f"relay: could not read back topic {self.topic!r} past its "
                            "committed offsets within 60 s"
                        )
                    for records in reader.poll(timeout_ms=500).values():
                        skip.update(_id_of(r.value) for r in records)
        finally:
            reader.close()
        if skip:
            log.warning(
                "relay found records published but not committed; not publishing them again",
                topic=self.topic,
                records=len(skip),
            )
        self._skip = skip

    def _reader(self) -> KafkaConsumer:
        config = self.producer.config
        options = {k: v for k, v in config.items() if k.startswith(READER_OPTIONS)}
        return KafkaConsumer(group_id=None, enable_auto_commit=False, **options)

    def _partition_ids(self, reader: KafkaConsumer) -> list[int]:
        found = reader.partitions_for_topic(self.topic)
        return sorted(found) if found else []

    def _end_offsets(self) -> dict[int, int]:
        reader = self._reader()
        try:
            parts = [TopicPartition(self.topic, p) for p in self._partition_ids(reader)]
            ends = reader.end_offsets(parts) if parts else {}
        finally:
            reader.close()
        return {tp.partition: int(o) for tp, o in ends.items()}

    def _decision(self, stored: StoredEvent) -> dict[str, Any] | None:
        """The CloudEvent of one stored lead event, if it is a decision. Only decisions and the
        lead's start are decoded here; facts wait undecoded until an MQL needs the whole lead
        (its reasons), which keeps the relay's cost near its output's."""
        lead_id = UUID(str(stored.originator_id))
        version = stored.originator_version
        name = stored.topic[len(LEAD_TOPIC) :]
        tail = self._cache.pop(lead_id, None)
        if tail is not None and tail.version != version - 1:
            tail = None  # a gap (should not happen): start this lead afresh
        doc = None
        if version == 1:
            started = self.app.sealed_mapper.to_domain_event(stored)
            tail = _Tail(str(started.key), 1, pending=[started])
        elif name not in DECISION_NAMES:
            if tail is not None:
                tail.add(stored, version)
        else:
            event = self.app.sealed_mapper.to_domain_event(stored)
            if tail is None:
                tail = _Tail(self._key_of(lead_id), version, pending=None)
            else:
                tail.add(event, version)
            if isinstance(event, Lead.Erased):
                tail.key = pseudonym(lead_id)
            lead = self._whole(tail, lead_id, version) if name == "MarketingQualified" else None
            doc = to_cloudevent(event, lead_id, tail.key, self.rules, lead)
        if tail is not None:
            if tail.pending is not None and len(tail.pending) > FOLD_AFTER:
                self._whole(tail, lead_id, version)  # a long tail: fold it, keep memory bounded
            self._cache[lead_id] = tail
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return doc

    def _whole(self, tail: _Tail, lead_id: UUID, version: int) -> Lead:
        """The lead folded up to `version`: the tail's pending events folded, else read."""
        if tail.pending is None:
            tail.lead = cast(Lead, self.app.repository.get(lead_id, version=version))
        else:
            lead = tail.lead
            for item in tail.pending:
                event = (
                    self.app.sealed_mapper.to_domain_event(item)
                    if isinstance(item, StoredEvent)
                    else item
                )
                lead = cast(Lead, event.mutate(lead))
            assert lead is not None
            tail.lead = lead
        tail.pending = []
        return tail.lead

    def _key_of(self, lead_id: UUID) -> str:
        """The lead key as readable now (its pseudonym once forgotten), from its first event."""
        [first] = self.app.recorder.select_events(lead_id, lte=1)
        self.app.sealed_mapper.prefetch_keys([first])
        return str(self.app.sealed_mapper.to_domain_event(first).key)

    def partition_of(self, lead_id: str) -> int:
        if self._partitions is None:
            found = self.producer.partitions_for(self.topic)
            if not found:
                raise LeadEngineError(f"relay: topic {self.topic!r} has no partitions")
            self._partitions = len(found)
        return int(lead_id.replace("-", ""), 16) % self._partitions  # the uuid's 128 bits

    def _commit(self, old: int, new: int, events: int, published: int, seconds: float) -> None:
        """Move the position from `old` to `new`, unless another relay moved it meanwhile."""
        try:
            moved = self._move(old, new, events, published, seconds)
        except psycopg.OperationalError:
            self.close()  # the next batch reconnects (after the caller's retry)
            raise
        if moved != 1:
            raise RelayMoved(
                f"relay position of topic {self.topic!r} moved away from {old} while this relay "
                "published; run one relay per topic (its decisions were published with stable "
                "ids: a consumer sees duplicates only)"
            )

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()  # kept: a connection per batch costs ~10 ms
            # a commit lost with a database crash moves the position and offsets back
            # together: the tail past them is read back and skipped, nothing is sent twice
            self._conn.execute("SET synchronous_commit = off")
        return self._conn

    def _reader_conn(self) -> psycopg.Connection[Any]:
        """The reading thread's connection (a psycopg connection serves one thread)."""
        if self._rconn is None or self._rconn.closed:
            self._rconn = self.db.connect()
        return self._rconn

    def _move(self, old: int, new: int, events: int, published: int, seconds: float) -> int:
        conn = self._connection()
        offsets = Jsonb({str(p): o for p, o in sorted(self._offsets.items())})
        if old == 0:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (topic, position) VALUES (%s, 0) ON CONFLICT DO NOTHING"
                ).format(self._table),
                (self.topic,),
            )
        return conn.execute(
            sql.SQL(
                "UPDATE {} SET position = %s, offsets = %s, batch_events = %s, "
                "batch_published = %s, batch_seconds = %s, updated_at = now() "
                "WHERE topic = %s AND position = %s"
            ).format(self._table),
            (new, offsets, events, published, seconds, self.topic, old),
        ).rowcount

    def close(self) -> None:
        for conn in (self._conn, self._rconn):
            if conn is not None:
                conn.close()
        self._conn = self._rconn = None


def _id_of(value: bytes | None) -> str:
    """A record's CloudEvent id ("" when it is not one of ours: nothing to skip)."""
    try:
        return str(json.loads(value or b"")["id"])
    except (ValueError, TypeError, KeyError):
        return ""


def producer(bootstrap: str, **options: object) -> KafkaProducer:
    """acks=all and the client's idempotence: a retried send is not written twice."""
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        client_id="leadengine-relay",
        **options,
    )
