"""`lead_sla_rounds`: one row per routing round of a lead, with that round's SLA timers.

A lead is routed again when it comes back to the routing stage (recycled and qualified again,
a routing that found nobody retried, a manual owner released). Each round owes its own first
sales touch and decision, counted in business hours from its routing; a fact counts for the
round it falls in (at or after its routing, before the next one). The latest round's timers
are `lead_sla`'s row. The timers' states depend on the moment they are read at, so the contract
view computes them at `now()` from the deadlines stored here (engine/projections/registry.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.aggregates.lead import Lead
from engine.domain.facts import Fact
from engine.domain.rules import Sla
from engine.domain.sla import add_business_hours, decided_at, first_touch_at
from engine.projections.registry import TABLES

COLUMNS = TABLES["lead_sla_rounds"].names


def round_rows(lead: Lead, sla: Sla, facts: list[Fact] | None = None) -> list[tuple[Any, ...]]:
    """Every routing round's row, in the order the engine routed (`round` 1, 2, ...). `facts`:
    what stops the timers, the person's (engine/stitching/person.py `sla_facts`); default the
    lead's own. The rounds are the lead's own routings either way."""
    out: list[tuple[Any, ...]] = []
    bh = sla.business_hours
    routed = lead.routed
    every = list(lead.facts) if facts is None else facts
    for i, event in enumerate(routed):
        routed_at = event.occurred_at
        ended: datetime | None = routed[i + 1].occurred_at if i + 1 < len(routed) else None
        facts_in = [f for f in every if ended is None or f.occurred_at < ended]
        out.append(
            (
                lead.id,
                i + 1,
                lead.key,
                event.owner,
                event.queue,
                event.strategy,
                event.why,
                event.trigger_event_id,
                routed_at,
                ended,
                add_business_hours(routed_at, sla.first_touch_hours, bh),
                add_business_hours(routed_at, sla.at_risk_after * sla.first_touch_hours, bh),
                first_touch_at(facts_in, routed_at, event.owner, sla),
                add_business_hours(routed_at, sla.decision_hours, bh),
                add_business_hours(routed_at, sla.at_risk_after * sla.decision_hours, bh),
                decided_at(facts_in, routed_at),
            )
        )
    return out
