"""Identity stitching (engine/stitching, docs/identity.md): links, merges and unmerges join
leads into people without moving a fact; person state is the union of the members' facts."""

from __future__ import annotations

from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.contract import Envelope, validate_event
from engine.domain.errors import InvalidEvent
from engine.domain.rules import Rules
from engine.services.application import LeadEngine
from engine.stitching.person import Person
from tests.conftest import POPO_ENV
from tests.factory import raw

EMAIL = "ada@example.org"
MASTER = b"stitching-test-master-key-32byte"


def ev(type_: str, subject: str, data: dict[str, Any], days: float, id: str) -> Envelope:
    return validate_event(raw(type_, subject, data, days=days, id=id))


def anonymous_journey() -> list[Envelope]:
    """A cookie clicks an ad and reads a page; days later the form fill makes `ada` known."""
    return [
        ev("touch.ad_clicked", "cookie-1", {"channel": "paid_search", "campaign": "q1"}, 0, "a1"),
        ev("touch.page_viewed", "cookie-1", {"channel": "web"}, 0.1, "a2"),
        ev("lead.captured", "ada", {"email": EMAIL, "name": "Ada"}, 3, "c1"),
        ev("touch.form_submitted", "ada", {"channel": "web", "form": "demo"}, 3, "f1"),
    ]


def link(days: float = 3, id: str = "l1") -> Envelope:
    return ev("identity.linked", "cookie-1", {"to": "ada", "reason": "form fill"}, days, id)


def merged(days: float = 5, id: str = "m1", loser: str = "ada-2") -> Envelope:
    data = {"winner": "ada", "by": "crm-admin", "reason": "same person"}
    return ev("lead.merged", loser, data, days, id)


def unmerged(days: float = 6, id: str = "u1", loser: str = "ada-2") -> Envelope:
    data = {"winner": "ada", "by": "crm-admin", "reason": "two Adas after all"}
    return ev("lead.unmerged", loser, data, days, id)


def duplicate() -> list[Envelope]:
    """A second lead for the same person: captured from another form, sales accepted it."""
    return [
        ev("lead.captured", "ada-2", {"email": EMAIL}, 4, "c2"),
        ev("touch.webinar_attended", "ada-2", {"channel": "webinar"}, 4.5, "w2"),
        ev("owner.assigned", "ada-2", {"owner": "rep-9"}, 4.6, "o2"),
        ev("sales.accepted", "ada-2", {"rep": "rep-9"}, 4.7, "s2"),
    ]


def shape(p: Person) -> tuple[Any, ...]:
    """What a person's state is, comparable across two runs."""
    path = tuple((t.lead_id, t.fact.event_id) for t in p.path)
    return (p.person_id, p.lead_ids, p.stage, p.furthest, p.owner, p.score.total, path)


def fresh(rules: Rules) -> LeadEngine:
    return LeadEngine(rules=rules, env=POPO_ENV, master_key=MASTER)  # same key: same lead ids


def test_first_touch_of_a_linked_person_is_the_pre_capture_ad_click(
    memory_app: LeadEngine,
) -> None:
    memory_app.ingest([*anonymous_journey(), link()])
    person = memory_app.person("ada")
    assert person.first_touch is not None
    assert person.first_touch.fact.event_id == "a1"
    assert person.first_touch.fact.data["channel"] == "paid_search"
    assert [t.fact.event_id for t in person.path] == ["a1", "a2", "f1"]
    assert person.person_id == memory_app.lead_id("ada")
    assert memory_app.person("cookie-1") == person  # any key of the person gives the person
    # the facts never moved: the ad click is still on the cookie's own stream
    assert [f.event_id for f in memory_app.get_lead("cookie-1").facts] == ["a1", "a2", "l1"]
    assert memory_app.get_lead("cookie-1").stage == "anonymous"


def test_without_the_link_the_known_lead_starts_at_its_form(memory_app: LeadEngine) -> None:
    memory_app.ingest(anonymous_journey())
    person = memory_app.person("ada")
    assert person.first_touch is not None and person.first_touch.fact.event_id == "f1"
    assert person.lead_ids == (memory_app.lead_id("ada"),)


def test_merge_joins_histories_with_the_documented_rules(memory_app: LeadEngine) -> None:
    memory_app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    person = memory_app.person("ada-2")
    ids = {memory_app.lead_id(k) for k in ("ada", "ada-2", "cookie-1")}
    assert set(person.lead_ids) == ids and person.person_id == memory_app.lead_id("ada")
    assert person.stage == "sal"  # the furthest any member got
    assert (person.owner, person.owner_source) == ("rep-9", "manual")
    assert [t.fact.event_id for t in person.path] == ["a1", "a2", "f1", "w2"]
    alone = memory_app.person("ada")
    assert alone == person


def test_unmerge_gives_back_exactly_the_state_without_the_merge(rules: Rules) -> None:
    with_merge, without = fresh(rules), fresh(rules)
    with_merge.ingest([*anonymous_journey(), link(), *duplicate(), merged(), unmerged()])
    without.ingest([*anonymous_journey(), link(), *duplicate()])
    for key in ("ada", "ada-2", "cookie-1"):
        assert shape(with_merge.person(key)) == shape(without.person(key))
        a, b = with_merge.get_lead(key), without.get_lead(key)
        assert (a.stage, a.owner, a.reached) == (b.stage, b.owner, b.reached)
    assert with_merge.person("ada-2").lead_ids == (with_merge.lead_id("ada-2"),)


def test_the_merge_is_a_recorded_decision_with_who_and_why(memory_app: LeadEngine) -> None:
    memory_app.ingest([*duplicate(), merged()])
    (decision,) = memory_app.get_lead("ada-2").links
    assert (decision.relation, decision.by, decision.reason) == (
        "merged",
        "crm-admin",
        "same person",
    )
    assert decision.other_id == memory_app.lead_id("ada")
    again = memory_app.ingest([merged()])  # redelivery: the same fact, no second decision
    assert again.duplicates == 1 and len(memory_app.get_lead("ada-2").links) == 1


def test_as_of_before_the_merge_shows_two_people(memory_app: LeadEngine) -> None:
    memory_app.ingest([*anonymous_journey(), *duplicate()])
    before = memory_app.get_lead("ada-2").modified_on
    memory_app.ingest([merged()])
    assert len(memory_app.person("ada", as_of=before).lead_ids) == 1
    assert len(memory_app.person("ada").lead_ids) == 2
    memory_app.ingest([ev("touch.webinar_attended", "ada-2", {"channel": "webinar"}, 8, "w3")])
    later = memory_app.person("ada")
    merged_then = memory_app.person("ada", as_of=memory_app.get_lead("ada-2").links[0].timestamp)
    assert len(later.path) == len(merged_then.path) + 1  # each member as it was recorded then


def test_forget_on_any_key_forgets_every_key_of_the_person(memory_app: LeadEngine) -> None:
    memory_app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    result = memory_app.forget("cookie-1", reason="ticket 7", by="dpo", at=raw_time(9))
    forgotten = {result.lead_id, *(m.lead_id for m in result.members)}
    assert forgotten == {memory_app.lead_id(k) for k in ("ada", "ada-2", "cookie-1")}
    assert {"ada", "ada-2", EMAIL} <= result.personal_values
    for key in ("ada", "ada-2", "cookie-1"):
        lead = memory_app.get_lead(key)
        assert lead.erased_at is not None and lead.key.startswith("erased-")
        assert all("to" not in f.data and "winner" not in f.data for f in lead.facts)
    # the history stays: the person is still one, its path unchanged
    assert [t.fact.event_id for t in memory_app.person("ada").path] == ["a1", "a2", "f1", "w2"]


def raw_time(days: float) -> Any:
    return ev("touch.page_viewed", "x", {"channel": "web"}, days, "t").occurred_at


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        ("identity.linked", {"to": "cookie-1"}, "data.to"),
        ("lead.merged", {"winner": "cookie-1", "by": "x", "reason": "y"}, "data.winner"),
        ("lead.merged", {"winner": "ada", "reason": "y"}, "data.by"),
        ("lead.unmerged", {"winner": "ada", "by": "x", "reason": " "}, "data.reason"),
        ("identity.linked", {"to": "  "}, "data.to"),
    ],
)
def test_identity_events_are_refused_with_the_field_named(
    type_: str, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(raw(type_, "cookie-1", data, id="bad-1"))
    assert caught.value.field == field and caught.value.event_id == "bad-1"
    assert caught.value.expected


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(9)), st.data())
def test_any_arrival_order_gives_the_same_people(order: list[int], data: st.DataObject) -> None:
    """Links, merges, unmerges and touches in any arrival order (and batching): same people."""
    from engine.domain.rules import load_rules

    rules = load_rules()
    stream = [*anonymous_journey(), link(), *duplicate()[:2], merged(), unmerged(days=7)]
    reference = fresh(rules)
    reference.ingest(stream)
    shuffled = [stream[i] for i in order]
    cut = data.draw(st.integers(0, len(shuffled)))
    app = fresh(rules)
    app.ingest(shuffled[:cut])
    app.ingest(shuffled[cut:])
    for key in ("ada", "ada-2", "cookie-1"):
        assert shape(app.person(key)) == shape(reference.person(key))
    assert [astuple(j) for j in app.identity_map().joins] == [
        astuple(j) for j in reference.identity_map().joins
    ]
