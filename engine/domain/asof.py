"""A lead as of a moment, on two clocks.

`recorded_by(T)`: the events the engine had stored by T (what it knew then); folding them gives
exactly the state `lead show` saw at T. `occurred_by(T)`: the facts that had happened by T and
the decisions taken on them, as known now (late facts included), in the order they were taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.aggregates.lead import Lead
from engine.domain.errors import LeadEngineError, echoed


def occurred(event: object) -> datetime | None:
    return getattr(event, "occurred_at", None)


def recorded_by(events: Sequence[Any], moment: datetime) -> list[Any]:
    return [e for e in events if e.timestamp <= moment]


def occurred_by(events: Sequence[Any], moment: datetime) -> list[Any]:
    """Facts and decisions that happened by `moment`; anomaly flags follow their fact."""
    kept: list[Any] = []
    facts: set[str] = set()
    for e in events:
        if isinstance(e, Lead.Started):
            kept.append(e)
        elif isinstance(e, Lead.AnomalyFlagged):
            if e.event_id in facts:
                kept.append(e)
        else:
            at = occurred(e)
            if at is None or at <= moment:
                kept.append(e)
                if isinstance(e, Lead.FactRecorded):
                    facts.add(e.event_id)
    return kept


def fold(events: Sequence[Any], key: str, moment: datetime | None = None) -> Lead:
    """The lead after `events` (a subset of its stream; skipped versions are stepped over)."""
    lead: Lead | None = None
    for e in events:
        if lead is not None and e.originator_version != lead.version + 1:
            lead.version = e.originator_version - 1
        lead = e.mutate(lead)
    if lead is None or not lead.facts:
        when = f" at {moment.isoformat()}" if moment else ""
        raise LeadEngineError(f"lead {echoed(key)} was not known{when} (no facts recorded by then)")
    return lead
