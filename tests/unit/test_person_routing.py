"""One person, one owner (docs/identity.md): once two keys are one person, the write side routes
the person once, whichever key qualifies first and in whatever order the keys' streams
interleave; an unmerge gives each key its own routing back, as if there had been no merge."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead
from engine.domain.contract import Envelope
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV as POPO
from tests.factory import ev
from tests.unit.test_routing import make_rules

REPS = [{"id": r} for r in ("a", "b", "c")]


@pytest.fixture
def app() -> Iterator[LeadEngine]:
    engine = LeadEngine(rules=make_rules("round_robin", REPS), env=POPO)
    yield engine
    engine.close()


def qualifying(key: str, n: float) -> list[Envelope]:
    """Captured, a profile and a form: enough to qualify and be routed (rules of test_routing)."""
    return [
        ev("lead.captured", key, {"email": f"{key}@acme.com", "country": "US"}, days=n),
        ev("lead.profile_updated", key, {"seniority": "manager"}, days=n),
        ev("touch.form_submitted", key, {"channel": "web"}, days=n),
    ]


def merged(loser: str, winner: str, n: float, kind: str = "lead.merged") -> Envelope:
    return ev(kind, loser, {"winner": winner, "by": "crm-admin", "reason": "same person"}, days=n)


def routings(app: LeadEngine, key: str) -> list[Any]:
    return [
        e
        for e in app.events.get(app.get_lead(key).id)
        if isinstance(e, (Lead.Routed, Lead.RoutingFailed))
    ]


def routed(app: LeadEngine, key: str) -> int:
    return sum(isinstance(e, Lead.Routed) for e in routings(app, key))


def test_a_key_merged_after_the_other_was_routed_is_not_routed_again(app: LeadEngine) -> None:
    app.ingest(qualifying("ada", 0))
    app.ingest([ev("lead.captured", "ada-2", {"email": "a2@acme.com"}, days=1)])
    app.ingest([merged("ada-2", "ada", 1)])
    app.ingest(qualifying("ada-2", 2)[1:])
    assert (routed(app, "ada"), routed(app, "ada-2")) == (1, 0)
    assert app.get_lead("ada-2").stage == "mql" and app.get_lead("ada-2").owner is None
    why = routings(app, "ada-2")[-1]
    assert isinstance(why, Lead.RoutingFailed) and why.queue is None
    ada = app.get_lead("ada")
    assert f"lead {ada.id} of the same person is routed to {ada.owner}" in why.reason
    # a later fact on the loser asks again and still finds the person worked: nothing new
    app.ingest([ev("touch.page_viewed", "ada-2", {"channel": "web", "url": "/"}, days=3)])
    assert len(routings(app, "ada-2")) == 1
    assert app.person("ada-2").owner == ada.owner


def test_the_winner_qualifying_after_its_merged_duplicate_was_routed_is_not_routed(
    app: LeadEngine,
) -> None:
    """The winner's own stream says nothing of the merge (it is on the loser's stream): the
    engine finds it through the winner's `Kin`."""
    app.ingest([ev("lead.captured", "ada", {"email": "a@acme.com"}, days=0)])
    app.ingest(qualifying("ada-2", 1))
    app.ingest([merged("ada-2", "ada", 2)])
    app.ingest(qualifying("ada", 3)[1:])
    assert (routed(app, "ada"), routed(app, "ada-2")) == (0, 1)
    assert app.person("ada").owner == app.get_lead("ada-2").owner


def test_a_manual_owner_on_either_key_keeps_the_person_from_routing(app: LeadEngine) -> None:
    app.ingest([ev("lead.captured", "ada", {"email": "a@acme.com"}, days=0)])
    app.ingest([ev("owner.assigned", "ada", {"owner": "rep-9"}, days=0)])
    app.ingest([ev("identity.linked", "cookie-1", {"to": "ada"}, days=1)])
    app.ingest(qualifying("cookie-1", 2))
    assert routed(app, "cookie-1") == 0 and app.get_lead("cookie-1").stage == "mql"
    assert "is assigned (manual owner) to rep-9" in routings(app, "cookie-1")[-1].reason
    assert app.person("cookie-1").owner == "rep-9"


def test_keys_routed_before_they_were_merged_keep_their_routings(app: LeadEngine) -> None:
    """Two people each routed, then found to be one: both routings stand (the read side's
    person owner follows the conflict rule: manual beats routed, the earliest wins)."""
    app.ingest(qualifying("ada", 0) + qualifying("ada-2", 1))
    app.ingest([merged("ada-2", "ada", 2)])
    assert (routed(app, "ada"), routed(app, "ada-2")) == (1, 1)
    assert app.person("ada-2").owner == app.get_lead("ada").owner


def shape(app: LeadEngine, key: str) -> tuple[Any, ...]:
    lead = app.get_lead(key)
    return (lead.stage, lead.owner is not None, lead.routing_open, routed(app, key))


def test_an_unmerge_gives_each_key_its_own_routing_as_if_never_merged(app: LeadEngine) -> None:
    app.ingest(qualifying("ada", 0))
    app.ingest([ev("lead.captured", "ada-2", {"email": "a2@acme.com"}, days=1)])
    app.ingest([merged("ada-2", "ada", 1)])
    app.ingest(qualifying("ada-2", 2)[1:])
    assert routed(app, "ada-2") == 0
    app.ingest([merged("ada-2", "ada", 3, kind="lead.unmerged")])

    without = LeadEngine(rules=make_rules("round_robin", REPS), env=POPO)
    without.ingest(qualifying("ada", 0))
    without.ingest([ev("lead.captured", "ada-2", {"email": "a2@acme.com"}, days=1)])
    without.ingest(qualifying("ada-2", 2)[1:])
    for key in ("ada", "ada-2"):
        assert shape(app, key) == shape(without, key) == ("mql", True, True, 1)
    assert app.person("ada-2").lead_ids == (app.get_lead("ada-2").id,)
    without.close()


KEYS = ("p", "q", "r")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations([k for k in KEYS for _ in range(3)]))
def test_one_person_is_routed_once_whatever_order_its_keys_qualify_in(order: list[str]) -> None:
    """Three keys joined (`q` merged into `p`, `r` linked to `q`), then each key's qualifying
    stream, the streams interleaved event by event in any order: the person is routed exactly
    once, whichever key gets there first (the winner finds its merged key through `Kin`)."""
    app = LeadEngine(rules=make_rules("round_robin", REPS), env=POPO)
    try:
        app.ingest([merged("q", "p", 0), ev("identity.linked", "r", {"to": "q"}, days=0)])
        streams = {key: qualifying(key, 1) for key in KEYS}
        for key in order:
            app.ingest([streams[key].pop(0)])
        assert sum(routed(app, k) for k in KEYS) == 1
        owned = [k for k in KEYS if app.get_lead(k).routing_open]
        assert len(owned) == 1
        assert app.person("r").owner == app.get_lead(owned[0]).owner
        assert all(app.get_lead(k).stage == "mql" for k in KEYS)
    finally:
        app.close()
