"""The two clocks of every as-of question (issue 14): `--as-of T` is what the engine had
recorded by T, `--occurred-by T` what had happened by T. The SLA report read from the read
model equals every lead replayed from its own events on the same clock."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.analytics import queries as reports
from engine.analytics.funnel import snapshot
from engine.analytics.load import load
from engine.domain import asof
from engine.domain.contract import validate_event
from engine.domain.errors import LeadEngineError
from engine.domain.generator import generate
from engine.domain.sla import sla_state
from engine.runtime import Runtime

HAPPENED_BY = datetime(2026, 3, 2, 12, tzinfo=UTC)


def _late_split(events: list[dict[str, Any]]) -> tuple[list[Any], list[Any], set[str]]:
    """Every third lead arrives late (all of it happened long before it is recorded)."""
    keys = sorted({e["subject"] for e in events if str(e.get("subject", "")).startswith("crm-")})
    late = set(keys[::3])
    first = [validate_event(e) for e in events if e.get("subject") not in late]
    second = [validate_event(e) for e in events if e.get("subject") in late]
    return first, second, late


def _replayed(
    runtime: Runtime,
    keys: Sequence[str],
    cut: Callable[[Sequence[Any], datetime], list[Any]],
    moment: datetime,
) -> dict[str, Any]:
    """What `report sla` must say: each lead folded from its events cut on one clock."""
    sla = runtime.rules.sla
    assert sla is not None
    by_owner: Counter[tuple[str, str, str]] = Counter()
    attention: set[tuple[str, str, str]] = set()
    routed = 0
    for key in keys:
        try:
            lead = asof.fold(cut(runtime.app.lead_events(key), moment), key)
        except LeadEngineError:
            continue  # not known on this clock yet
        state = sla_state(list(lead.facts), lead.routings, sla, moment)
        if state is None:
            continue
        routed += 1
        for t in (state.first_touch, state.decision):
            by_owner[(state.owner, state.queue, f"{t.name}_{t.status}")] += 1
            if t.status in ("breached", "at_risk"):
                attention.add((key, t.name, t.status))
    return {"routed": routed, "by_owner": by_owner, "attention": attention}


def _reported(doc: dict[str, Any]) -> dict[str, Any]:
    by_owner: Counter[tuple[str, str, str]] = Counter()
    for row in doc["by_owner"]:
        for name, value in row.items():
            if name.startswith(("first_touch_", "decision_")) and value:
                by_owner[(row["owner"], row["queue"], name)] += value
    attention = {(a["lead"], a["timer"], a["status"]) for a in doc["attention"]}
    return {"routed": doc["routed_leads"], "by_owner": by_owner, "attention": attention}


def test_sla_and_funnel_on_each_clock_equal_every_lead_replayed(runtime: Runtime) -> None:
    raw = generate(90, seed=5)
    first, second, late = _late_split(raw)
    runtime.app.ingest(first)
    runtime.projector.run()
    time.sleep(0.05)
    recorded = datetime.now(UTC)  # T: the first part is recorded, the late leads are not
    funnel_then = reports.funnel(runtime.db)
    time.sleep(0.05)
    runtime.app.ingest(second)
    runtime.projector.run()
    keys = sorted({e["subject"] for e in raw if str(e.get("subject", "")).startswith("crm-")})
    sla = runtime.rules.sla
    assert sla is not None

    as_of = reports.sla(runtime.db, sla, recorded, clock="recorded")
    assert _reported(as_of) == _replayed(runtime, keys, asof.recorded_by, recorded)
    assert not {a["lead"] for a in as_of["attention"]} & late  # recorded after T: not there
    everything = reports.sla(runtime.db, sla, recorded)  # the old meaning: all that happened
    assert everything["routed_leads"] > as_of["routed_leads"]

    happened = reports.sla(runtime.db, sla, HAPPENED_BY, clock="occurred")
    assert _reported(happened) == _replayed(runtime, keys, asof.occurred_by, HAPPENED_BY)
    assert happened["routed_leads"] > 0

    # the funnel as of T (from the journeys recorded by T) is the one the read model showed
    then = snapshot(load(runtime.db, recorded))
    assert then["leads_total"] == funnel_then["leads_total"]
    assert [(s["stage"], s["reached"], s["now"]) for s in then["stages"]] == [
        (s["stage"], s["reached"], s["now"]) for s in funnel_then["stages"]
    ]
    assert then["exits_now"] == funnel_then["exits_now"]
    now = snapshot(load(runtime.db))
    assert now["leads_total"] > then["leads_total"]
    assert [(s["stage"], s["reached"], s["now"]) for s in now["stages"]] == [
        (s["stage"], s["reached"], s["now"]) for s in reports.funnel(runtime.db)["stages"]
    ]
