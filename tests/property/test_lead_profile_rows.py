"""A lead's profile and best persona are made once per lead and batch (`rows.lead_profile`)
and shared by its `lead_state` and `account_signals` rows: for random histories (captures,
touches, profile updates in any order, ties in time) under the shipped rules (personas on
seniority, title and size), each row made with the shared profile is the row made on its own,
and both show the persona the lead's whole profile ranks first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain.errors import EventConflict
from engine.domain.facts import profile_of
from engine.domain.rules import load_rules
from engine.domain.scoring import rank_personas
from engine.projections import accounts, rows
from tests.property.test_lean_fold import START, data_of

RULES = load_rules()
PROFILE = "lead.profile_updated"
KINDS = ["touch.page_viewed", "touch.email_opened", "lead.captured", PROFILE, PROFILE]

profiles = st.fixed_dictionaries(
    {},
    optional={
        "seniority": st.sampled_from(["c-level", "vp", "director", "manager", "staff"]),
        "title": st.sampled_from(["Head of Ops", "Engineer", "devops lead"]),
        "employees": st.sampled_from([5, 250, 1200]),
        "company": st.sampled_from(["Acme", "Globex"]),
        "industry": st.sampled_from(["saas", "retail"]),
    },
)
histories = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 30), st.integers(0, 5), profiles),
    max_size=20,
)


@given(histories)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rows_made_with_the_shared_profile_are_the_rows_made_alone(
    raw: list[tuple[str, int, int, dict[str, Any]]],
) -> None:
    lead = Lead.start("k@example.com", uuid4())
    for n, (type_, hour, variant, profile) in enumerate([("lead.captured", 0, 0, {}), *raw]):
        data = dict(profile) if type_ == PROFILE else data_of(type_, variant)
        try:
            lead.record(
                event_id=f"e{n}",
                event_type=type_,
                source="crm",
                occurred_at=START + timedelta(hours=hour),
                data=data,
                rules=RULES,
            )
        except EventConflict:
            continue
    primary = lead.current_score(RULES, explain=False)
    known = rows.lead_profile(lead, RULES)
    state = rows.lead_state_row(lead, RULES, primary, known)
    signals = accounts.signals_row(lead, primary.engagement, RULES, known)
    assert state == rows.lead_state_row(lead, RULES, primary)
    assert signals == accounts.signals_row(lead, primary.engagement, RULES)
    attrs, origin = profile_of(lead.facts)
    ranked = rank_personas(attrs, origin, RULES.personas)
    best = ranked[0] if ranked and ranked[0].fit > 0 else None
    event(f"persona {best.persona if best else None}")
    assert known.attrs == attrs
    assert known.persona == best
    assert signals[-1] == (best.persona if best else None)
    assert best is None or best.persona in state
