"""The relay: follows the notification log and publishes the engine's decisions to Kafka.

Each batch of notifications past the relay's position is read; of the lead events, the
decisions and each lead's start are decoded (facts only when an MQL needs the whole lead for its
reasons), turned into CloudEvents (engine/domain/decisions.py) and handed to the producer; once
the broker has acknowledged every record of the batch (`flush`, acks=all) the new position
commits in `relay_tracking` (one row per topic), guarded by the old one so two relays on one
topic cannot both move it. A crash between the acknowledgement and that commit publishes the
batch again on restart, with the same CloudEvent ids: at-least-once with stable ids.

A lead's decisions go to one partition, chosen from its id (never from its key, which turns
into the pseudonym when the lead is forgotten), so a consumer sees them in order.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from kafka import KafkaProducer
from psycopg import sql

from engine import metrics
from engine.aggregates.lead import Lead
from engine.domain.decisions import TYPES, to_cloudevent
from engine.domain.errors import LeadEngineError
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules
from engine.logs import get_logger
from engine.postgres.db import Database
from engine.services.application import LeadEngine

TABLE = "relay_tracking"  # made by migration 12 (engine/postgres/migrations.py)
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


class Relay:
    """Publishes the decisions of `app`'s log to `topic` through `producer`."""

    def __init__(
        self,
        app: LeadEngine,
        db: Database,
        producer: KafkaProducer,
        topic: str,
        rules: Rules,
        *,
        batch_size: int = 1000,
        cache_size: int = 20_000,
    ) -> None:
        self.app = app
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

    def position(self) -> int:
        """How far the log has been relayed to this topic (0: nothing yet)."""
        return positions(self.db).get(self.topic, 0)

    def reset(self) -> None:
        """Start this topic again from the first event (`relay --from-start`)."""
        with self.db.connect() as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE topic = %s").format(self._table), (self.topic,)
            )
        self._cache.clear()

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
        returns how many decisions were published."""
        published = 0
        position = self.position()
        while not (stop and stop()):
            count, sent, position = self.run_batch(position)
            published += sent
            if count == 0:
                if until_caught_up:
                    break
                time.sleep(idle_sleep)
        return published

    def run_batch(self, position: int) -> tuple[int, int, int]:
        """Publish the decisions of the next batch past `position`, wait for the broker's
        acknowledgement, then commit the new position. (notifications, published, position)"""
        notifications = self.app.recorder.select_notifications(
            start=position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0, 0, position
        started = time.perf_counter()
        lead_events = [n for n in notifications if n.topic.startswith(LEAD_TOPIC)]
        self.app.sealed_mapper.prefetch_keys(lead_events)
        docs = [doc for doc in map(self._decision, lead_events) if doc is not None]
        futures = [self._send(doc) for doc in docs]  # in one go: the producer batches them
        self.producer.flush()
        for future in futures:
            future.get(timeout=0)  # raises what the broker refused: the position stays
        last = notifications[-1].id
        seconds = time.perf_counter() - started
        self._commit(position, last, len(notifications), len(futures), seconds)
        metrics.relay_published.labels(topic=self.topic).inc(len(futures))
        metrics.relay_batch_seconds.observe(seconds)
        metrics.relay_position.labels(topic=self.topic).set(last)
        return len(notifications), len(futures), last

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
        return UUID(lead_id).int % self._partitions

    def _send(self, doc: dict[str, Any]) -> Any:
        return self.producer.send(
            self.topic,
            key=str(doc["subject"]).encode(),
            value=json.dumps(doc, separators=(",", ":")).encode(),
            partition=self.partition_of(doc["data"]["lead_id"]),
        )

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

    def _move(self, old: int, new: int, events: int, published: int, seconds: float) -> int:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()  # kept: a connection per batch costs ~10 ms
        conn = self._conn
        if old == 0:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (topic, position) VALUES (%s, 0) ON CONFLICT DO NOTHING"
                ).format(self._table),
                (self.topic,),
            )
        return conn.execute(
            sql.SQL(
                "UPDATE {} SET position = %s, batch_events = %s, batch_published = %s, "
                "batch_seconds = %s, updated_at = now() WHERE topic = %s AND position = %s"
            ).format(self._table),
            (new, events, published, seconds, self.topic, old),
        ).rowcount

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def producer(bootstrap: str, **options: Any) -> KafkaProducer:
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
