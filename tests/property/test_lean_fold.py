"""The lean fold (engine/domain/fold.py `LeanLead`) decides exactly as the Lead aggregate: for
random histories (funnel facts, touches, profile updates; ties in time, ids reused across
sources, redeliveries and conflicting reuses), random scoring rules and MQL thresholds, any
arrival order and a `forget` anywhere, it takes the same decisions with the same fields, in the
same order, ends in the same stage, path, stage moments and MQL rounds, and scores the same.

Both run one step function (`LeadFold.record_fact`); this proves the lean way of applying its
decisions (no event objects) is the aggregate's way of folding its events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain.errors import EventConflict
from engine.domain.fold import LeanLead
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules
from tests.property.test_event_time_properties import FACTS
from tests.property.test_incremental_scoring import TYPES as TOUCHES
from tests.property.test_incremental_scoring import URLS, models

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
IDS = [f"e{i}" for i in range(10)]
PROFILE = "lead.profile_updated"
KINDS = [*sorted(FACTS), *TOUCHES * 3, PROFILE, PROFILE, "owner.assigned"]
ORDERS = ("sorted", "reversed", "shuffled")


def data_of(type_: str, variant: int) -> dict[str, Any]:
    if type_ in FACTS:
        return dict(FACTS[type_])
    if type_ == PROFILE:
        return {"industry": ("saas", "retail")[variant % 2], "employees": (10, 800)[variant % 2]}
    if type_ == "owner.assigned":
        return {"owner": "ann"}
    return {"url": URLS[variant % len(URLS)]}


histories = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, 40),  # hours after START: ties are common
        st.sampled_from(["crm", "web"]),
        st.sampled_from(IDS),
        st.integers(0, 5),  # the payload's variant
        st.booleans(),  # the id names its content (a reuse is a redelivery) or not (a conflict)
    ),
    max_size=30,
)


@given(
    models(),
    histories,
    st.sampled_from(ORDERS),
    st.randoms(use_true_random=False),
    st.none() | st.integers(0, 30),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_lean_fold_decides_as_the_lead_aggregate(
    spec: dict[str, Any],
    raw: list[tuple[str, int, str, str, int, bool]],
    order: str,
    rnd: random.Random,
    erase: int | None,
) -> None:
    rules = Rules.model_validate(spec)
    raw = [("lead.captured", 0, "web", "cap", 0, True), *raw]  # a lead, so MQL can be decided
    if order == "sorted":
        raw = sorted(raw, key=lambda r: r[1])
    elif order == "reversed":
        raw = sorted(raw, key=lambda r: r[1], reverse=True)
    else:
        rnd.shuffle(raw)
    lead_id = uuid4()
    lead, lean = Lead.start("k@example.com", lead_id), LeanLead("k@example.com", log=True)
    said: list[tuple[str, str]] = []
    for n, (type_, hour, source, id_, variant, named) in enumerate(raw):
        if n == erase:
            lead.erase(reason="asked", by="ops", at=START)
            lean.erase(at=START, key=pseudonym(lead_id))
        event_id = f"{id_}-{type_}-{hour}-{variant}" if named else id_
        fact = (event_id, type_, source, START + timedelta(hours=hour), data_of(type_, variant))
        outcomes = []
        for recorder in (_aggregate(lead, rules), _lean(lean, rules)):
            try:
                outcomes.append(recorder(*fact))
            except EventConflict as e:
                outcomes.append(f"conflict: {e}")
        assert outcomes[0] == outcomes[1]
        said.append(outcomes[0])
    events = lead.collect_events()[1:]  # after Started
    for kind in ("StageRetracted", "MarketingQualified", "AnomalyFlagged", "Erased"):
        event(f"{kind} {'taken' if any(type(e).__name__ == kind for e in events) else 'none'}")
    event(f"conflicts {'some' if any(s.startswith('conflict') for s in said) else 'none'}")
    assert [_fields(e) for e in events] == lean.log
    assert lean.version == lead.version
    same = ("stage", "reached", "path", "qualified", "mql_rounds", "anomalies", "clock", "key")
    for name in (*same, "owner", "owner_source", "routing_open", "erased_at", "facts", "seen"):
        assert getattr(lean, name) == getattr(lead, name), name
    assert lean.walked == lead.walked
    if lead.clock is not None:
        assert lean.current_score(rules) == lead.current_score(rules)
        assert lean.current_score(rules, explain=False) == lead.current_score(rules, explain=False)


def _aggregate(lead: Lead, rules: Rules) -> Any:
    def record(event_id: str, type_: str, source: str, at: datetime, data: dict[str, Any]) -> str:
        got = lead.record(
            event_id=event_id,
            event_type=type_,
            source=source,
            occurred_at=at,
            data=data,
            rules=rules,
        )
        return got.value

    return record


def _lean(lean: LeanLead, rules: Rules) -> Any:
    def record(event_id: str, type_: str, source: str, at: datetime, data: dict[str, Any]) -> str:
        return lean.record_fact(event_id, type_, source, at, data, rules)

    return record


def _fields(stored: Any) -> tuple[str, dict[str, Any]]:
    """A stored event as the lean fold logs it: its kind and its own fields."""
    kind = type(stored).__name__
    skip = {"timestamp", "originator_topic", "originator_id", "originator_version"}
    fields = {k: v for k, v in vars(stored).items() if k not in skip}
    if kind == "Erased":
        fields = {"occurred_at": fields["occurred_at"]}
    if kind == "FactRecorded":
        fields.setdefault("extra", None)
    return kind, fields
