"""Engine-detected duplicates (docs/identity.md#duplicates): normalisation, the rules section,
and detection at ingest on the in-memory store, whatever the arrival order."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.aggregates.kin import kin_id
from engine.domain.contract import Envelope, validate_event
from engine.domain.duplicates import (
    match_hash,
    match_secret,
    normalise,
    normalise_email,
    normalise_phone,
)
from engine.domain.errors import RulesError
from engine.domain.rules import DuplicateRule, Identity, Rules, load_rules, parse_rules
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import raw

MASTER = b"duplicates-test-master-key-32byt"


def test_email_is_trimmed_and_lower_cased_dots_and_tags_count() -> None:
    assert normalise_email("  Ada.Lovelace+Q1@Example.ORG \n") == "ada.lovelace+q1@example.org"
    assert normalise_email("ada.lovelace@example.org") != normalise_email("adalovelace@example.org")
    assert normalise_email("ada+x@example.org") != normalise_email("ada@example.org")
    assert normalise_email("no-at-sign") is None
    assert normalise_email("@example.org") is None and normalise_email("ada@") is None
    assert normalise("email", 42) is None


def test_phone_keeps_digits_and_a_leading_plus() -> None:
    assert normalise_phone(" +44 (20) 7946-0958 ") == "+442079460958"
    assert normalise_phone("020 7946 0958") == "02079460958"
    assert normalise_phone("1+2") == "12"  # a plus inside is not a country prefix
    assert normalise_phone("n/a") is None
    assert normalise_phone("٣٤٥") is None  # non-ASCII digits are not phone digits


@given(st.text(max_size=40))
def test_normalising_twice_changes_nothing(value: str) -> None:
    for match in ("email", "phone"):
        once = normalise(match, value)
        if once is not None:
            assert normalise(match, once) == once


def test_the_hash_is_keyed_and_distinct_per_kind() -> None:
    secret = match_secret(MASTER)
    assert secret != MASTER
    h = match_hash(secret, "email", "ada@example.org")
    assert h == match_hash(secret, "email", "ada@example.org")
    assert h != match_hash(
        match_secret(b"another-master-key-of-32-bytes!!"), "email", "ada@example.org"
    )
    assert h != match_hash(secret, "phone", "ada@example.org")
    assert not hmac.compare_digest(h, "ada@example.org")
    assert "ada" not in h


def test_duplicate_rules_are_validated_with_lines() -> None:
    base = 'name: x\nversion: "1"\n'
    with pytest.raises(
        RulesError, match=r"<rules>:6: identity.duplicates.0.match: Input should be"
    ):
        parse_rules(base + "identity:\n  duplicates:\n    - name: a\n      match: fax\n")
    with pytest.raises(RulesError, match=r"<rules>:6: identity.duplicates.0.action"):
        parse_rules(
            base + "identity:\n  duplicates:\n    - name: a\n      action: delete\n"
            "      match: email\n"
        )
    with pytest.raises(RulesError, match=r"name\(s\) \['a'\] used more than once"):
        parse_rules(
            base + "identity:\n  duplicates:\n    - {name: a, match: email}\n"
            "    - {name: a, match: phone}\n"
        )
    with pytest.raises(RulesError, match=r"more than one rule matches on \['email'\]"):
        parse_rules(
            base + "identity:\n  duplicates:\n    - {name: a, match: email}\n"
            "    - {name: b, match: email, action: merge}\n"
        )
    rules = parse_rules(base + "identity:\n  duplicates:\n    - {name: a, match: phone}\n")
    assert rules.identity.duplicates == (DuplicateRule(name="a", match="phone", action="suggest"),)
    assert parse_rules(base).identity.duplicates == ()
    assert [(r.name, r.match, r.action) for r in load_rules().identity.duplicates] == [
        ("same-email", "email", "suggest")
    ]


def with_rules(*rules: DuplicateRule) -> Rules:
    return load_rules().model_copy(update={"identity": Identity(duplicates=rules)})


def captured(key: str, email: str, day: int, phone: str | None = None) -> Envelope:
    data: dict[str, Any] = {"email": email}
    if phone is not None:
        data["phone"] = phone
    at = datetime(2026, 3, 1 + day, 9, tzinfo=UTC)
    return validate_event(raw("lead.captured", key, data, at=at, id=f"cap-{key}"))


def app_for(rules: Rules) -> LeadEngine:
    return LeadEngine(rules=rules, env=POPO_ENV, master_key=MASTER)


def test_suggest_records_a_pair_the_older_key_winning_and_merges_nothing() -> None:
    app = app_for(with_rules(DuplicateRule(name="mail", match="email", action="suggest")))
    app.ingest([captured("ada", "Ada@Example.org", 0), captured("ada-2", "ada@Example.ORG", 1)])
    app.ingest([captured("bob", "bob@example.org", 2)])
    (((rule, winner, loser), (pair, state)),) = app.duplicates.pairs.items()
    assert (rule, winner, loser) == ("mail", app.lead_id("ada"), app.lead_id("ada-2"))
    assert (state, pair.match, pair.action, pair.rules_version) == (
        "open",
        "email",
        "suggest",
        "default@2026.1",
    )
    assert app.identity_map().people() == {}  # a suggestion joins nobody


def test_merge_records_an_engine_merge_naming_the_rule() -> None:
    app = app_for(with_rules(DuplicateRule(name="phone", match="phone", action="merge")))
    app.ingest(
        [captured("ada", "a@x.org", 0, "+1 555 0100"), captured("ada-2", "b@x.org", 1, "+15550100")]
    )
    people = app.identity_map()
    assert people.members(app.lead_id("ada-2")) == sorted(
        [app.lead_id("ada"), app.lead_id("ada-2")], key=str
    )
    assert people.person_of(app.lead_id("ada-2")) == app.lead_id("ada")
    (link,) = app.get_lead("ada-2").links
    assert (link.relation, link.other_id, link.by) == ("merged", app.lead_id("ada"), "leadengine")
    assert link.reason == "duplicate rule phone (rules default@2026.1): same phone"
    # undone by lead.unmerged like any merge
    app.ingest(
        [
            validate_event(
                raw(
                    "lead.unmerged",
                    "ada-2",
                    {"winner": "ada", "by": "crm-admin", "reason": "two people"},
                    at=datetime(2026, 3, 5, tzinfo=UTC),
                    id="un-1",
                )
            )
        ]
    )
    assert app.identity_map().people() == {}
    ((_, state),) = app.duplicates.pairs.values()
    assert state == "unmerged"


KEYS = ("k0", "k1", "k2", "k3")


def outcome(app: LeadEngine) -> tuple[Any, ...]:
    """What the rules decided, in ids: open pairs, and the people (person id and leads)."""
    opened = sorted(
        (r, str(w), str(lo)) for (r, w, lo), (_, s) in app.duplicates.pairs.items() if s == "open"
    )
    people = sorted((str(p), sorted(map(str, m))) for p, m in app.identity_map().people().items())
    return (opened, people)


@settings(max_examples=40, deadline=None)
@given(
    emails=st.lists(st.sampled_from(["a@x.org", "A@X.org", "b@x.org"]), min_size=4, max_size=4),
    phones=st.lists(st.sampled_from(["+1 555", "+1555", "999"]), min_size=4, max_size=4),
    days=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    order=st.permutations(range(4)),
    batch=st.integers(1, 4),
)
def test_any_arrival_order_gives_the_same_suggestions_and_merges(
    emails: list[str], phones: list[str], days: list[int], order: list[int], batch: int
) -> None:
    rules = with_rules(
        DuplicateRule(name="mail", match="email", action="suggest"),
        DuplicateRule(name="tel", match="phone", action="merge"),
    )
    events = [captured(k, emails[i], days[i], phones[i]) for i, k in enumerate(KEYS)]
    in_order = app_for(rules)
    for e in events:
        in_order.ingest([e])
    shuffled = app_for(rules)
    arriving = [events[i] for i in order]
    for start in range(0, len(arriving), batch):
        shuffled.ingest(arriving[start : start + batch])
    assert outcome(shuffled) == outcome(in_order)
    # the person id is the oldest key's (earliest first seen, then id), in either order
    seen = {shuffled.lead_id(k): (days[i], str(shuffled.lead_id(k))) for i, k in enumerate(KEYS)}
    for person, members in shuffled.identity_map().people().items():
        assert person == min(members, key=lambda m: seen[m])
    # every value shared by several keys ends as pairs with its oldest key
    for (_, w, lo), (_, state) in shuffled.duplicates.pairs.items():
        if state == "open":
            assert isinstance(w, UUID) and w != lo


def test_an_older_key_arriving_after_a_younger_one_wins_the_merge() -> None:
    """The merge is recorded on the older key's stream (the newcomer's, the only one its
    consumer writes) with `subject_wins`: the person id is the older key's, as in time order;
    its consumer notes it on the younger key's `Kin` with the same direction."""
    rules = with_rules(DuplicateRule(name="tel", match="phone", action="merge"))
    late = app_for(rules)
    late.ingest([captured("young", "y@x.org", 3, "+1 555")])
    late.ingest([captured("old", "o@x.org", 0, "+1555")])
    old, young = late.lead_id("old"), late.lead_id("young")
    (link,) = late.get_lead("old").links
    assert (link.relation, link.other_id, link.subject_wins) == ("merged", young, True)
    assert late.identity_map().people() == {old: sorted([old, young], key=str)}
    kin = late.repository.get(kin_id(young))
    assert [(j[1], j[5]) for j in kin.joined] == [(old, True)]
    in_order = app_for(rules)
    in_order.ingest([captured("old", "o@x.org", 0, "+1555")])
    in_order.ingest([captured("young", "y@x.org", 3, "+1 555")])
    assert in_order.identity_map().people() == late.identity_map().people()
    assert not in_order.get_lead("young").links[0].subject_wins


def upstream_fact(kind: str, loser: str, winner: str, day: int, n: int) -> Envelope:
    data = {"winner": winner, "by": "crm", "reason": "one person"}
    at = datetime(2026, 3, 1 + day, 10, tzinfo=UTC)
    return validate_event(raw(kind, loser, data, at=at, id=f"up-{n}"))


def pair_states(app: LeadEngine) -> list[tuple[str, str, str, str]]:
    return sorted((r, str(w), str(lo), s) for (r, w, lo), (_, s) in app.duplicates.pairs.items())


@settings(max_examples=60, deadline=None)
@given(
    tail=st.lists(
        st.tuples(st.sampled_from(["lead.merged", "lead.unmerged"]), st.booleans()), max_size=3
    ),
    batch=st.integers(1, 6),
)
def test_upstream_merges_in_the_same_batch_as_the_suggestion_close_it_as_one_by_one(
    tail: list[tuple[str, bool]], batch: int
) -> None:
    """A suggestion and an upstream lead.merged / lead.unmerged of its pair in one batch: the
    pair ends in the state the same events give one by one (a trial found `open` left behind
    when the merge came in the suggestion's batch)."""
    rules = with_rules(DuplicateRule(name="mail", match="email", action="suggest"))
    events = [captured("k-old", "x@y.test", 0), captured("k-new", "X@y.test", 1)]
    events += [
        upstream_fact(kind, "k-new" if loser_new else "k-old", "k-old" if loser_new else "k-new",
                      2 + n, n)
        for n, (kind, loser_new) in enumerate(tail)
    ]  # fmt: skip
    one_by_one = app_for(rules)
    for e in events:
        one_by_one.ingest([e])
    batched = app_for(rules)
    for start in range(0, len(events), batch):
        batched.ingest(events[start : start + batch])
    assert pair_states(batched) == pair_states(one_by_one)
    if tail and tail[0][0] == "lead.merged":
        assert pair_states(batched)[0][3] != "open"  # the upstream merge took the suggestion
