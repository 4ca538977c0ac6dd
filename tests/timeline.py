"""Journeys straight from the in-memory engine's event streams, folded as the projector folds
them (engine/projections/projector.py): touches and milestones from facts, moves from
StageChanged / MarketingQualified rows, less the rows a StageRetracted took back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.aggregates.lead import Lead
from engine.analytics.journeys import Dataset, Journey, Milestone, Move, Touchpoint
from engine.projections.rows import MILESTONE_TYPES
from engine.services.application import LeadEngine


def journey_of(app: LeadEngine, key: str) -> Journey:
    j = Journey(key)
    moves: dict[int, Move] = {}
    for e in app.lead_events(key):
        if isinstance(e, Lead.FactRecorded):
            d: dict[str, Any] = e.data
            if e.event_type.startswith("touch."):
                j.touches.append(
                    Touchpoint(
                        e.occurred_at,
                        e.originator_version,
                        e.event_type,
                        d["channel"],
                        d.get("campaign"),
                        d.get("content"),
                        d.get("rep"),
                    )
                )
            elif e.event_type in MILESTONE_TYPES:
                amount = d.get("amount")
                j.milestones.append(
                    Milestone(
                        e.occurred_at,
                        e.event_type,
                        d.get("rep") or d.get("owner"),
                        d.get("reason") or d.get("program"),
                        Decimal(str(amount)) if amount is not None else None,
                        d.get("currency"),
                    )
                )
        elif isinstance(e, Lead.StageChanged):
            moves[e.originator_version] = Move(e.occurred_at, e.from_stage, e.to_stage, e.reason)
        elif isinstance(e, Lead.MarketingQualified):
            moves[e.originator_version] = Move(e.occurred_at, e.from_stage, "mql", "mql")
        elif isinstance(e, Lead.StageRetracted):
            del moves[e.version_retracted]
        elif isinstance(e, Lead.Routed):
            j.routed.append(e.occurred_at)
    j.moves = [moves[v] for v in sorted(moves)]
    j.sort()
    return j


def dataset_of(app: LeadEngine, keys: list[str]) -> Dataset:
    return Dataset([journey_of(app, k) for k in sorted(keys)], [])
