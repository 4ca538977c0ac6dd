"""One person, one SLA clock (docs/identity.md): a routed lead's timers stop on a sales touch or
decision logged on any key of its person (an alias linked to it, a duplicate merged into it), in
event time, exactly as if every fact had been on one lead; an unmerge gives each lead back the
timers it had without the merge."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain.contract import Envelope
from engine.domain.rules import Rules, parse_rules
from engine.domain.sla import sla_state
from engine.projections import rounds, rows
from engine.services.application import LeadEngine
from engine.services.timers import TimerService
from engine.stitching.person import person_sla, sla_facts
from tests.conftest import POPO_ENV as POPO
from tests.factory import T0, ev
from tests.unit.test_routing import RULES

#: test_routing's rules (a form qualifies and routes; calls score nothing, so only the routed
#: key ever qualifies) with an SLA counted around the clock: 4 hours to a first sales touch,
#: 16 to a decision.
SLA = """
sla:
  first_touch_hours: 4
  decision_hours: 16
  business_hours: {timezone: UTC, start_hour: 0, end_hour: 24,
                   days: [mon, tue, wed, thu, fri, sat, sun]}
"""
REPS = "        - {id: a}\n        - {id: b}"


def make_rules() -> Rules:
    return parse_rules(RULES.format(strategy="round_robin", reps=REPS) + SLA)


@pytest.fixture
def app() -> Iterator[LeadEngine]:
    engine = LeadEngine(rules=make_rules(), env=POPO)
    yield engine
    engine.close()


def hours(h: float) -> float:
    return h / 24


def qualifying(key: str) -> list[Envelope]:
    """Captured and a form at T0: routed at T0 (first touch due T0+4h, decision T0+16h)."""
    return [
        ev("lead.captured", key, {"email": f"{key}@acme.com", "country": "US"}),
        ev("touch.form_submitted", key, {"channel": "web"}),
    ]


def cell() -> Envelope:
    return ev("lead.captured", "ada-cell", {"email": "cell@acme.com", "phone": "+12025550147"})


def call(key: str, h: float, rep: str = "a") -> Envelope:
    data = {"channel": "sales", "rep": rep, "direction": "outbound", "outcome": "connected"}
    return ev("touch.call_logged", key, data, days=hours(h))


def members(app: LeadEngine, key: str) -> list[Lead]:
    return app.person_members(app.get_lead(key).id)


def timers(app: LeadEngine, key: str, h: float) -> tuple[Any, ...]:
    lead = app.get_lead(key)
    state = person_sla(lead, members(app, key), app.rules.sla, T0 + timedelta(hours=h))  # type: ignore[arg-type]
    assert state is not None
    return (state.first_touch.done_at, state.first_touch.status, state.decision.status)


def test_a_call_on_a_linked_alias_stops_the_routed_keys_first_touch_timer(
    app: LeadEngine,
) -> None:
    app.ingest(qualifying("ada"))
    app.ingest([cell(), call("ada-cell", 1)])
    assert timers(app, "ada", 2) == (None, "pending", "pending")  # two people: two clocks
    assert timers(app, "ada", 5)[1] == "breached"
    app.ingest([ev("identity.linked", "ada-cell", {"to": "ada"}, days=hours(3))])
    # one person: the call (before the link, after the routing) is the person's first touch
    assert timers(app, "ada", 5) == (T0 + timedelta(hours=1), "met", "pending")
    app.ingest([ev("sales.accepted", "ada-cell", {"reason": "fit"}, days=hours(6))])
    assert timers(app, "ada", 20)[2] == "met"
    # the link undone: ada's timers are what they were without it
    app.ingest([ev("lead.unmerged", "ada-cell", {"winner": "ada", "by": "x", "reason": "no"},
                   days=hours(7))])  # fmt: skip
    assert timers(app, "ada", 20) == (None, "breached", "breached")


def test_a_merged_duplicates_decision_stops_the_winners_decision_timer(app: LeadEngine) -> None:
    """The merge is recorded on the loser's stream; the winner is the routed key."""
    app.ingest(qualifying("ada"))
    app.ingest([ev("lead.captured", "ada-2", {"email": "a2@acme.com"}), call("ada-2", 2)])
    app.ingest([ev("sales.qualified", "ada-2", {"reason": "budget"}, days=hours(10))])
    merge = {"winner": "ada", "by": "crm-admin", "reason": "same person"}
    app.ingest([ev("lead.merged", "ada-2", merge, days=hours(11))])
    assert timers(app, "ada", 20) == (T0 + timedelta(hours=2), "met", "met")
    # the other way round: the loser's own SLA (it was never routed) is still none
    loser = app.get_lead("ada-2")
    assert person_sla(loser, members(app, "ada-2"), app.rules.sla, T0 + timedelta(hours=20)) is None  # type: ignore[arg-type]


def test_a_touch_before_the_routing_or_by_another_rep_under_owner_only() -> None:
    """What counts is what counts on one lead: at or after the routing; with `owner_only`,
    only the owner's touches, whichever key they were logged on."""
    rules = parse_rules(
        RULES.format(strategy="round_robin", reps=REPS) + SLA + "  owner_only: true\n"
    )
    app = LeadEngine(rules=rules, env=POPO)
    try:
        app.ingest([cell(), call("ada-cell", -1)])
        app.ingest([ev("identity.linked", "ada-cell", {"to": "ada"})])
        app.ingest(qualifying("ada"))
        owner = app.get_lead("ada").owner
        other = "b" if owner == "a" else "a"
        app.ingest([call("ada-cell", 1, rep=other)])
        assert timers(app, "ada", 5)[:2] == (None, "breached")
        app.ingest([call("ada-cell", 3, rep=owner or "")])
        assert timers(app, "ada", 5)[:2] == (T0 + timedelta(hours=3), "met")
    finally:
        app.close()


# -- the property: one person's SLA is the SLA of one lead holding the union ------------------

KEYS = ("ada", "ada-cell", "ada-2")
SALES = ("touch.call_logged", "touch.email_sent", "touch.meeting_booked", "sales.accepted",
         "sales.qualified", "touch.page_viewed")  # fmt: skip

fact_strategy = st.tuples(
    st.sampled_from(KEYS), st.sampled_from(SALES), st.integers(-3, 30), st.sampled_from("ab")
)
#: the identity decisions: (subject, to), where among the facts, unmerged later or not
joins = st.lists(
    st.tuples(
        st.sampled_from([("ada-cell", "ada"), ("ada-2", "ada"), ("ada-2", "ada-cell")]),
        st.integers(0, 20),
        st.booleans(),
        st.sampled_from(["identity.linked", "lead.merged"]),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda j: j[0],
)


def fact(key: str, kind: str, h: int, rep: str, n: int) -> Envelope:
    data: dict[str, Any] = {"channel": "sales", "rep": rep}
    if kind == "touch.call_logged":
        data |= {"direction": "outbound", "outcome": "connected"}
    elif kind.startswith("sales."):
        data = {"reason": "r"}
    elif kind == "touch.page_viewed":
        data = {"channel": "web", "url": "/pricing"}
    return ev(kind, key, data, days=hours(h), id=f"f-{n}")


def same(rows: list[Any]) -> list[Any]:
    """Rows without what two engines name apart: the lead id (a keyed hash under each engine's
    secret) and the id of the event that triggered the routing (the factory's counter)."""
    return [(*r[1:7], *r[8:]) if len(r) > 10 else r[1:] for r in rows if r is not None]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=st.lists(fact_strategy, max_size=14), decisions=joins, data=st.data())
def test_a_persons_sla_is_the_sla_of_one_lead_holding_the_union(
    facts: list[tuple[str, str, int, str]], decisions: list[Any], data: st.DataObject
) -> None:
    """Sales touches and decisions spread at random over three keys, arriving in any order,
    with links or merges (some undone) among the facts: the routed key's timers, as of any
    moment, and its rounds' rows are those of one lead that got every fact of the keys still
    joined to it at the end (the unjoined keys' facts stay theirs)."""
    stream: list[Any] = [("fact", *f) for f in facts]
    for (subject, to), at, undone, kind in decisions:
        where = min(at, len(stream))
        stream.insert(where, ("join", subject, to, kind))
        if undone:
            later = data.draw(st.integers(where + 1, len(stream)))
            stream.insert(later, ("undo", subject, to, kind))
    people = LeadEngine(rules=make_rules(), env=POPO)
    one = LeadEngine(rules=make_rules(), env=POPO)
    try:
        people.ingest([ev("lead.captured", k, {"email": f"{k}@acme.com"}) for k in KEYS[1:]])
        people.ingest(qualifying("ada"))
        one.ingest(qualifying("ada"))
        for stamp, step in enumerate(stream, 1):
            if step[0] == "fact":
                people.ingest([fact(*step[1:], stamp)])
            else:
                _, subject, to, kind = step
                field = "to" if kind == "identity.linked" else "winner"
                body = {field: to} if kind == "identity.linked" else {
                    "winner": to, "by": "crm", "reason": "same"}  # fmt: skip
                if step[0] == "undo":
                    kind, body = "lead.unmerged", {"winner": to, "by": "crm", "reason": "no"}
                people.ingest([ev(kind, subject, body, days=hours(stamp / 100), id=f"j-{stamp}")])
        joined = {m.key for m in members(people, "ada")}
        for n, (key, kind, h, rep) in enumerate(facts):
            if key in joined:
                one.ingest([fact("ada", kind, h, rep, 1000 + n)])
        routed, single = people.get_lead("ada"), one.get_lead("ada")
        assert routed.routings == single.routings
        union = sla_facts(routed, members(people, "ada"))
        sla = people.rules.sla
        assert sla is not None
        for h in (-1, 0, 2, 3.5, 4, 5, 12, 16, 17, 40):
            at = T0 + timedelta(hours=h)
            assert sla_state(union, routed.routings, sla, at) == sla_state(
                list(single.facts), single.routings, sla, at
            )
        assert same(rounds.round_rows(routed, sla, union)) == same(rounds.round_rows(single, sla))
        assert same([rows.sla_row(routed, sla, union)]) == same([rows.sla_row(single, sla)])
    finally:
        people.close()
        one.close()


# -- the timer service: no alert for a timer another key of the person closed -----------------


def alerts(app: LeadEngine, key: str) -> list[tuple[str, str]]:
    return [(e.timer, e.status) for e in app.lead_events(key) if isinstance(e, Lead.SlaAlerted)]


@pytest.mark.parametrize("linked", [False, True])
def test_the_timer_service_alerts_on_no_timer_an_alias_closed(linked: bool) -> None:
    app = LeadEngine(rules=make_rules(), env=POPO)
    try:
        app.ingest(qualifying("ada"))
        app.ingest([cell(), call("ada-cell", 1)])
        if linked:  # the merge is on the alias's stream: the routed lead knows it by its Kin
            merge = {"winner": "ada", "by": "crm-admin", "reason": "same person"}
            app.ingest([ev("lead.merged", "ada-cell", merge, days=hours(2))])
        ada = app.get_lead("ada")
        assert len(app.person_now(ada)) == (2 if linked else 1)
        now = [T0]
        service = TimerService(app, app.rules.sla, clock=lambda: now[0])  # type: ignore[arg-type]
        service.resume()
        service.scan()
        now[0] = T0 + timedelta(hours=5)
        service.fire()
        expected = [] if linked else [("first_touch", "at_risk"), ("first_touch", "breached")]
        assert alerts(app, "ada") == expected
    finally:
        app.close()
