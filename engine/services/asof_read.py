"""A lead as the engine had it at a moment, on the lean fold: `lead show --as-of` without
building an eventsourcing event object for every stored fact.

One query reads the lead's rows (version, topic, state) as plain tuples. A row recorded after
the moment is dropped on its recorded time alone (read off the start of its JSON, where the
transcoder writes `timestamp`). A plain fact (no sealed personal data, no kept unknown fields,
no other typed value than its two moments) is decoded with `json.loads` and applied to the
lean lead (engine/domain/fold.py) directly; every other row (the start, decisions, sealed
facts) goes through the application's mapper, exactly as `lead_events` decodes it, and is
applied by its own event class. The result reads as `asof.fold(asof.recorded_by(...))`
(tests/integration/test_asof_lean.py proves it).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import sql
from psycopg.rows import tuple_row

from engine.aggregates.lead import Lead
from engine.domain.errors import LeadEngineError, LeadNotFound
from engine.domain.fold import EPOCH, LeanLead
from engine.domain.rules import ScoringModel
from engine.domain.scoring import Score
from engine.postgres.store import datastore_of

_FACT_TOPIC = "engine.aggregates.lead:Lead.FactRecorded"
_STAMP = b'{"timestamp":{"_type_":"datetime_iso","_data_":"'
_TYPED = b'"_type_"'
_SLOW = (b'"_pii"', b'"extra"')  # sealed personal data, kept unknown fields: the mapper opens


class AsOfLead(LeanLead):
    """A lean lead with the aggregate's other state (routing, SLA alerts, identity links), so
    stored decisions of every kind apply to it as to a `Lead`."""

    def __init__(self, lead_id: UUID) -> None:
        super().__init__("")
        self.id = lead_id
        self.version = 0
        self.queue: str | None = None
        self.routings: list[tuple[datetime, str, str]] = []
        self.routed: list[Any] = []  # every routing decision, as `Lead.routed`
        self.routing_failure: str | None = None
        self.sla_alerts: set[tuple[datetime, str, str]] = set()
        self.links: list[Any] = []
        self.created_on: datetime | None = None

    def current_score(
        self, rules: ScoringModel, as_of: datetime | None = None, *, explain: bool = True
    ) -> Score:
        """As `Lead.current_score` (a lead with no dated fact is scored at its start)."""
        when = as_of or self.clock or self.created_on or EPOCH
        return self.score_at(rules, when, explain=explain)


def lead_as_of(app: Any, key: str, moment: datetime) -> AsOfLead:
    """The lead `key` from the events the engine had recorded by `moment` (see the module
    docstring). Raises `LeadNotFound` for an unknown key, `LeadEngineError` when it had no
    facts by then (as `lead show --as-of` says it)."""
    lead_id: UUID = app.lead_id(key)
    lead = AsOfLead(lead_id)
    rows = _rows(app, lead_id)
    if not rows:
        raise LeadNotFound(key)
    mapper = app.mapper
    plain = getattr(mapper, "compressor", None) is None and getattr(mapper, "cipher", None) is None
    for version, topic, state in rows:
        at = _recorded(state) if plain else None
        if at is not None and at > moment:
            continue
        if plain and _is_plain_fact(topic, state):
            doc = json.loads(state.decode())  # str: no encoding sniffed per row
            if datetime.fromisoformat(doc["timestamp"]["_data_"]) > moment:
                continue
            lead.version = version
            lead._apply_fact(
                doc["event_id"],
                doc["event_type"],
                doc["source"],
                datetime.fromisoformat(doc["occurred_at"]["_data_"]),
                doc["data"],
                None,
            )
            continue
        event = mapper.to_domain_event(StoredEvent(lead_id, version, topic, state))
        if event.timestamp > moment:
            continue
        lead.version = version
        if isinstance(event, Lead.Started):
            lead.key = event.key
            lead.created_on = event.timestamp
            continue
        if isinstance(event, Lead.AnomalyFlagged):
            lead.anomalies += 1
            continue
        type(event).apply(event, cast(Lead, lead))
    if not lead.facts:
        raise LeadEngineError(f"lead {key!r} was not known at {moment.isoformat()}")
    return lead


def _is_plain_fact(topic: str, state: bytes) -> bool:
    """A fact with no sealed data, no kept unknown fields, no typed value but its moments."""
    if topic != _FACT_TOPIC or state.count(_TYPED) != 2:
        return False
    return not any(mark in state for mark in _SLOW)


def _recorded(state: bytes) -> datetime | None:
    """The recorded time at the start of a stored state, if it starts as the transcoder
    writes it (else None: the caller decodes the row to know)."""
    if not state.startswith(_STAMP):
        return None
    end = state.find(b'"', len(_STAMP))
    try:
        return datetime.fromisoformat(state[len(_STAMP) : end].decode())
    except ValueError:
        return None


def _rows(app: Any, lead_id: UUID) -> list[tuple[int, str, bytes]]:
    """The lead's stored rows in version order, one query (the in-memory store: its records)."""
    recorder = app.recorder
    datastore = datastore_of(recorder)
    if datastore is None:
        return [
            (e.originator_version, e.topic, bytes(e.state)) for e in recorder.select_events(lead_id)
        ]
    statement = sql.SQL(
        "SELECT originator_version, topic, state FROM {}.{} WHERE originator_id = %s "
        "ORDER BY originator_version"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(statement, (lead_id,))
        return [(int(v), str(t), bytes(s)) for v, t, s in curs.fetchall()]
