"""The relay: follows the notification log and publishes the engine's decisions to Kafka.

Each batch of notifications past the relay's position is decoded (lead events only), folded
onto its leads, turned into CloudEvents (engine/decisions.py) and handed to the producer; once
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
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from kafka import KafkaProducer
from psycopg import sql

from engine import metrics
from engine.aggregates.lead import Lead
from engine.application import LeadEngine
from engine.db import Database
from engine.decisions import to_cloudevent
from engine.errors import LeadEngineError
from engine.logs import get_logger
from engine.rules import Rules

TABLE = "relay_tracking"  # made by migration 13 (engine/migrations.py)
#: The part of a stored event's topic that names a Lead event (others are skipped undecoded).
LEAD_TOPIC = "engine.aggregates.lead:Lead."

log = get_logger("engine.relay")


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
        self._cache: OrderedDict[UUID, Lead] = OrderedDict()
        self._partitions: int | None = None
        self._table = sql.Identifier(db.schema, TABLE)

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
        event = self.app.sealed_mapper.to_domain_event(stored)
        lead = self._fold(event)
        return to_cloudevent(event, lead, self.rules)

    def _fold(self, event: Any) -> Lead:
        lead_id = cast(UUID, event.originator_id)
        lead = self._cache.get(lead_id)
        if lead is not None and lead.version == event.originator_version - 1:
            lead = cast(Lead, event.mutate(lead))
        elif event.originator_version == 1:
            lead = cast(Lead, event.mutate(None))
        else:
            lead = cast(Lead, self.app.repository.get(lead_id, version=event.originator_version))
        self._cache[lead_id] = lead
        self._cache.move_to_end(lead_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return lead

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
            headers=[("ce_id", str(doc["id"]).encode()), ("ce_type", str(doc["type"]).encode())],
        )

    def _commit(self, old: int, new: int, events: int, published: int, seconds: float) -> None:
        """Move the position from `old` to `new`, unless another relay moved it meanwhile."""
        with self.db.connect() as conn:
            if old == 0:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (topic, position) VALUES (%s, 0) ON CONFLICT DO NOTHING"
                    ).format(self._table),
                    (self.topic,),
                )
            moved = conn.execute(
                sql.SQL(
                    "UPDATE {} SET position = %s, batch_events = %s, batch_published = %s, "
                    "batch_seconds = %s, updated_at = now() WHERE topic = %s AND position = %s"
                ).format(self._table),
                (new, events, published, seconds, self.topic, old),
            ).rowcount
        if moved != 1:
            raise RelayMoved(
                f"relay position of topic {self.topic!r} moved away from {old} while this relay "
                "published; run one relay per topic (its decisions were published with stable "
                "ids: a consumer sees duplicates only)"
            )


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
