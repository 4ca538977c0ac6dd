"""Where each reader of the log stands: the Kafka positions stored with the events and each
projection's tracking row (for `leadengine status` and `projections list`)."""

from __future__ import annotations

import re
from datetime import datetime

from psycopg import sql

from engine.postgres.db import Database
from engine.services.application import TRACKING_TABLE

#: a projection's tracking row: position, events and seconds of its last batch, when it moved
Tracking = tuple[int, int, float, datetime | None]


def kafka_positions(db: Database, topic: str) -> dict[int, int]:
    """The positions tracked as exactly `kafka.<topic>.<partition>`: not those of a topic
    whose name merely starts the same (`leads` beside `leads.eu`, a demo's `<topic>.demo-x`)."""
    query = sql.SQL(
        "SELECT application_name, notification_id FROM {} "
        "WHERE application_name LIKE %s ESCAPE '\\' AND application_name ~ %s"
    ).format(sql.Identifier(db.schema, TRACKING_TABLE))
    prefix = f"kafka.{topic}."
    like = "".join("\\" + c if c in "\\%_" else c for c in prefix) + "%"
    exact = "^" + re.escape(prefix) + "[0-9]+$"
    with db.connect() as conn:
        rows = conn.execute(query, (like, exact)).fetchall()
    return {int(name[len(prefix) :]): int(pos) for name, pos in rows}


def projection_positions(db: Database) -> dict[str, Tracking]:
    """Each projection's tracking row, by name (a projection that never ran has none)."""
    with db.connect() as conn:
        return {
            row[0]: (row[1], row[2], row[3], row[4])
            for row in conn.execute(
                sql.SQL(
                    "SELECT name, position, batch_events, batch_seconds, updated_at FROM {}"
                ).format(sql.Identifier(db.schema, "projection_tracking"))
            ).fetchall()
        }
