"""Where the engine's readers of the log stand: Kafka positions, projections, relays, each with
its lag against the head of the log (`leadengine status`, `projections list`)."""

from __future__ import annotations

from typing import Any

from engine.kafka import relay
from engine.postgres.db import Database
from engine.postgres.positions import kafka_positions, projection_positions
from engine.projections import parking
from engine.projections.projector import PROJECTIONS
from engine.services.application import LeadEngine

__all__ = ["kafka_positions", "projection_status", "relay_status"]


def projection_status(app: LeadEngine, db: Database) -> list[dict[str, Any]]:
    """Each projection: position, the log's head, lag, events/s of its last batch, and how
    many leads it parked."""
    head = app.recorder.max_notification_id() or 0
    found = projection_positions(db)
    with db.connect() as conn:
        parked = parking.counts(conn, db.schema)
    out = []
    for name in PROJECTIONS:
        position, events, seconds, updated = found.get(name, (0, 0, 0.0, None))
        out.append(
            {
                "name": name,
                "position": int(position),
                "log_head": head,
                "lag": max(0, head - int(position)),
                "events_per_s": round(events / seconds) if seconds else None,
                "updated_at": updated.isoformat(timespec="seconds") if updated else None,
                "parked": parked.get(name, 0),
            }
        )
    return out


def relay_status(app: LeadEngine, db: Database) -> list[dict[str, Any]]:
    """Each outbound topic `leadengine relay` publishes to: its position in the log and lag."""
    head = app.recorder.max_notification_id() or 0
    return [
        {**row, "log_head": head, "lag": max(0, head - row["position"])} for row in relay.status(db)
    ]
