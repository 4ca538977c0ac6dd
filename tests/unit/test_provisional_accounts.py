"""Provisional accounts at ingest (docs/accounts.md#provisional-accounts): unmatched leads on
a business domain open one at `min_leads`; free mail, matched leads and rules without
`accounts.provisional` never do; a CRM account claiming the domain adopts it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.aggregates.account import Account, account_id, provisional_key
from engine.domain.accounts.profile import fold
from engine.domain.contract import validate_event
from engine.domain.errors import RulesError
from engine.domain.rules import load_rules, parse_rules
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV as POPO
from tests.factory import raw

RULES = """
name: test
version: "1"
accounts:
  matching: {free_mail_domains: [gmail.com], legal_suffixes: [inc]}
  provisional: {from: domain, min_leads: 2}
"""


def engine(rules: str) -> LeadEngine:
    return LeadEngine(rules=parse_rules(rules), env=POPO)


@pytest.fixture
def app() -> Iterator[LeadEngine]:
    e = engine(RULES)
    yield e
    e.close()


def lead(key: str, email: str, days: float = 1, **data: Any) -> Any:
    return validate_event(raw("lead.captured", key, {"email": email, **data}, days=days))


def provisional(app: LeadEngine, domain: str) -> Account | None:
    try:
        found = app.repository.get(account_id(provisional_key(domain)))
    except AggregateNotFoundError:
        return None
    assert isinstance(found, Account)
    return found


def test_min_leads_unmatched_leads_open_a_provisional_account(app: LeadEngine) -> None:
    app.ingest([lead("l1", "pat@initech.io")])
    pending = provisional(app, "initech.io")
    assert pending is not None and not pending.opened and len(pending.noted) == 1
    app.ingest([lead("l1", "pat@initech.io", days=2, id="again")])  # the same lead: once
    assert provisional(app, "initech.io").noted == pending.noted  # type: ignore[union-attr]
    app.ingest([lead("l2", "kim@initech.io", days=3)])
    opened = provisional(app, "initech.io")
    assert opened is not None and opened.opened and opened.provisional
    profile = fold(opened.key, opened.updates)
    assert (profile.name, profile.domains) == ("initech.io", ("initech.io",))
    # the next lead on the domain matches it by domain: noted nowhere
    app.ingest([lead("l3", "lee@initech.io", days=4)])
    assert len(provisional(app, "initech.io").noted) == 2  # type: ignore[union-attr]


def test_free_mail_and_matched_leads_open_none(app: LeadEngine) -> None:
    app.ingest([validate_event(raw("account.updated", "a1", {"domains": ["acme.com"]}))])
    app.ingest([lead("l1", "pat@gmail.com"), lead("l2", "kim@gmail.com")])
    app.ingest([lead("l3", "lee@eu.acme.com"), lead("l4", "max@eu.acme.com")])
    app.ingest([lead("l5", "sue@zeta.dev", company="Acme Inc")])  # no domain account: a name?
    assert provisional(app, "gmail.com") is None and provisional(app, "eu.acme.com") is None
    assert provisional(app, "zeta.dev") is not None  # no account is named Acme


def test_without_the_rule_no_provisional_account() -> None:
    app = engine('name: test\nversion: "1"\n')
    try:
        app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
        assert provisional(app, "initech.io") is None
    finally:
        app.close()


def test_a_crm_account_claiming_the_domain_adopts_it(app: LeadEngine) -> None:
    app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
    crm = validate_event(raw("account.updated", "c9", {"domains": ["initech.io"]}, days=5))
    app.ingest([crm])
    adopted = provisional(app, "initech.io")
    assert adopted is not None and adopted.adopted_by == "c9"
    assert fold(adopted.key, adopted.updates).domains == ()
    app.ingest([validate_event(raw("account.updated", "c9", {"tier": 2}, days=6, id="u2"))])
    assert len(adopted.updates) == len(provisional(app, "initech.io").updates)  # type: ignore[union-attr]


def test_rules_check_names_the_lines_of_a_bad_provisional_rule(tmp_path: Any) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        'name: x\nversion: "1"\naccounts:\n  provisional:\n    from: name\n    min_leads: 0\n'
    )
    with pytest.raises(RulesError) as err:
        load_rules(bad)
    said = str(err.value)
    assert f"{bad}:5: accounts.provisional.from" in said
    assert f"{bad}:6: accounts.provisional.min_leads" in said
    good = tmp_path / "good.yaml"
    good.write_text('name: x\nversion: "1"\naccounts:\n  provisional: {from: domain}\n')
    assert load_rules(good).accounts.provisional.min_leads == 1  # type: ignore[union-attr]


def _crm(key: str, days: float, event_id: str, **data: Any) -> Any:
    return validate_event(raw("account.updated", key, data, days=days, id=event_id))


def test_a_crm_account_dropping_the_domain_releases_it(app: LeadEngine) -> None:
    """Adopted, then the CRM account drops the domain: with no other account claiming it, the
    provisional account claims it again (its leads match it by domain again)."""
    app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
    app.ingest([_crm("c9", 5, "u1", domains=["initech.io", "c9.com"])])
    app.ingest([_crm("c9", 6, "u2", domains=["c9.com"])])  # drops initech.io
    released = provisional(app, "initech.io")
    assert released is not None and released.adopted_by is None
    assert fold(released.key, released.updates).domains == ("initech.io",)
    # the CRM account claims it again: adopted again (a new update, never a conflict)
    app.ingest([_crm("c9", 7, "u3", domains=["initech.io", "c9.com"])])
    again = provisional(app, "initech.io")
    assert again is not None and again.adopted_by == "c9"
    assert fold(again.key, again.updates).domains == ()
    app.ingest([_crm("c9", 8, "u4", domains=["c9.com"])])
    assert fold(again.key, provisional(app, "initech.io").updates).domains == ("initech.io",)  # type: ignore[union-attr]


def test_a_domain_dropped_but_claimed_by_another_account_moves_the_adoption(
    app: LeadEngine,
) -> None:
    app.ingest([lead("l1", "pat@eu.initech.io"), lead("l2", "kim@eu.initech.io")])
    app.ingest([_crm("c9", 5, "u1", domains=["eu.initech.io"])])
    app.ingest([_crm("c7", 6, "v1", domains=["initech.io"])])  # a parent: c9's is more specific
    app.ingest([_crm("c9", 7, "u2", domains=["c9.com"])])
    moved = provisional(app, "eu.initech.io")
    assert moved is not None and moved.adopted_by == "c7"
    assert fold(moved.key, moved.updates).domains == ()
    # a domain kept through a parent still claims it: no release
    app.ingest([_crm("c7", 8, "v2", domains=["initech.io", "x.io"])])
    assert provisional(app, "eu.initech.io").adopted_by == "c7"  # type: ignore[union-attr]


def test_without_the_rule_a_dropped_domain_leaves_it_adopted(app: LeadEngine) -> None:
    """Rules without `accounts.provisional` open none: an adopted one is not reopened either,
    so its leads match no account."""
    app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
    app.ingest([_crm("c9", 5, "u1", domains=["initech.io"])])
    app.rules = load_rules()  # the shipped rules: no provisional accounts
    app.ingest([_crm("c9", 6, "u2", domains=["c9.com"])])
    kept = provisional(app, "initech.io")
    assert kept is not None and kept.adopted_by == "c9"
    assert fold(kept.key, kept.updates).domains == ()


def test_an_adoption_dated_before_the_opening_still_folds_after_it(app: LeadEngine) -> None:
    """A CRM update dated earlier than the opening adopts it all the same: the adoption is
    folded after the opening (equal times would fold by event id: `open:` after `adopted-by:`)."""
    app.ingest([lead("l1", "pat@initech.io", days=9), lead("l2", "kim@initech.io", days=9)])
    app.ingest([_crm("c9", 1, "u1", domains=["initech.io"])])
    adopted = provisional(app, "initech.io")
    assert adopted is not None and adopted.adopted_by == "c9"
    assert fold(adopted.key, adopted.updates).domains == ()


def test_min_leads_counts_people_not_lead_keys(app: LeadEngine) -> None:
    """Two keys of one person (linked, or merged) count once toward `min_leads`."""
    link = {"to": "l1"}
    app.ingest([validate_event(raw("identity.linked", "cookie-1", link, days=0.5))])
    app.ingest([lead("l1", "pat@initech.io"), lead("cookie-1", "pat@initech.io", days=1.5)])
    pending = provisional(app, "initech.io")
    assert pending is not None and len(pending.noted) == 2 and not pending.opened
    merged = {"winner": "l1", "by": "crm", "reason": "same person"}
    app.ingest([validate_event(raw("lead.merged", "l1-dup", merged, days=2))])
    app.ingest([lead("l1-dup", "p.a.t@initech.io", days=2.5)])
    assert not provisional(app, "initech.io").opened  # type: ignore[union-attr]
    app.ingest([lead("l2", "kim@initech.io", days=3)])  # another person: two now
    opened = provisional(app, "initech.io")
    assert opened is not None and opened.opened
    assert opened.updates[-1][3]["persons"] == 2 and opened.updates[-1][3]["leads"] == 4


PEOPLE = st.lists(st.integers(0, 4), min_size=1, max_size=7)  # lead i belongs to person p[i]


@settings(max_examples=25, deadline=None)
@given(PEOPLE, st.integers(1, 3), st.booleans())
def test_a_provisional_account_opens_at_min_leads_people(
    people: list[int], min_leads: int, merge: bool
) -> None:
    """Leads on one domain, some keys of one person (each joined to its person's first key
    by a link or a merge, recorded before its lead event): the account opens exactly when the
    people, not the keys, reach `min_leads`."""
    rules = RULES.replace("min_leads: 2", f"min_leads: {min_leads}")
    e = engine(rules)
    try:
        first: dict[int, str] = {}
        for i, person in enumerate(people):
            key = f"k{i}"
            if person in first:
                kind, field = ("lead.merged", "winner") if merge else ("identity.linked", "to")
                extra = {"by": "crm", "reason": "same person"} if merge else {}
                data = {field: first[person], **extra}
                e.ingest([validate_event(raw(kind, key, data, days=i))])
            else:
                first[person] = key
            e.ingest([lead(key, f"p{i}@initech.io", days=i + 0.5)])
            found = provisional(e, "initech.io")
            assert found is not None
            assert found.opened == (len(set(people[: i + 1])) >= min_leads), (i, people)
    finally:
        e.close()


def test_a_release_counts_min_leads_people_again(app: LeadEngine) -> None:
    """Released by its adopter, a provisional account claims its domain again only while its
    noted leads are still `min_leads` people (the rules now); else it stays closed, claiming
    nothing, and reopens when noted leads reach `min_leads` people again. Each a recorded
    update with the counts."""
    app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
    app.ingest([_crm("c9", 5, "u1", domains=["initech.io", "c9.com"])])
    app.rules = parse_rules(RULES.replace("min_leads: 2", "min_leads: 3"))
    app.ingest([_crm("c9", 6, "u2", domains=["c9.com"])])  # drops it: 2 people, 3 needed
    closed = provisional(app, "initech.io")
    assert closed is not None and closed.closed and closed.adopted_by is None
    assert fold(closed.key, closed.updates).domains == ()
    said = closed.updates[-1][3]
    assert (said["leads"], said["persons"], said["min_leads"], said["closed"]) == (2, 2, 3, True)
    # a CRM account claiming the domain now adopts nothing (it claims nothing to give up)
    app.ingest([_crm("c8", 7, "v1", domains=["initech.io"])])
    assert provisional(app, "initech.io").adopted_by is None  # type: ignore[union-attr]
    app.ingest([_crm("c8", 8, "v2", domains=["c8.com"])])
    app.ingest([lead("l3", "lee@initech.io", days=9)])  # a third person, unmatched: reopens
    reopened = provisional(app, "initech.io")
    assert reopened is not None and not reopened.closed
    assert fold(reopened.key, reopened.updates).domains == ("initech.io",)
    assert reopened.updates[-1][3] == {
        "domains": ["initech.io"],
        "reopened": True,
        "leads": 3,
        "persons": 3,
    }


def test_a_release_with_min_leads_people_claims_the_domain_again(app: LeadEngine) -> None:
    app.ingest([lead("l1", "pat@initech.io"), lead("l2", "kim@initech.io")])
    app.ingest([_crm("c9", 5, "u1", domains=["initech.io", "c9.com"])])
    app.ingest([_crm("c9", 6, "u2", domains=["c9.com"])])
    released = provisional(app, "initech.io")
    assert released is not None and not released.closed
    assert released.updates[-1][3] == {
        "domains": ["initech.io"],
        "released_by": "c9",
        "leads": 2,
        "persons": 2,
    }


#: one step: a lead of person p (0-3) on the domain, the CRM account claiming or dropping it,
#: or the rules' min_leads changing
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("lead"), st.integers(0, 3)),
        st.tuples(st.just("claim"), st.just(0)),
        st.tuples(st.just("drop"), st.just(0)),
        st.tuples(st.just("min"), st.integers(1, 4)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(STEPS)
def test_opening_adoption_release_and_reopening_follow_the_rules_in_any_order(
    steps: list[tuple[str, int]],
) -> None:
    """Against a model: a provisional account opens at `min_leads` noted people; a CRM
    account claiming the domain adopts it; dropping the domain releases it, claiming its
    domain again only with `min_leads` people (the rules then), else closed until noted
    people reach `min_leads` again. Leads of one person are linked before their lead event."""
    e = engine(RULES)
    min_leads, state, crm, people = 2, "none", False, set()
    first: dict[int, str] = {}
    try:
        for i, (step, n) in enumerate(steps):
            day = i + 1.0
            if step == "lead":
                key = f"k{i}"
                if n in first:
                    link = raw("identity.linked", key, {"to": first[n]}, days=day)
                    e.ingest([validate_event(link)])
                else:
                    first[n] = key
                e.ingest([lead(key, f"p{i}@initech.io", days=day + 0.5)])
                if not crm and state in ("none", "closed"):  # unmatched: noted
                    people.add(n)
                    if len(people) >= min_leads:
                        state = "open"
            elif step == "claim":
                e.ingest([_crm("c9", day, f"u{i}", domains=["initech.io", "c9.com"])])
                crm = True
                state = "adopted" if state == "open" else state
            elif step == "drop":
                e.ingest([_crm("c9", day, f"u{i}", domains=["c9.com"])])
                if crm and state == "adopted":
                    state = "open" if len(people) >= min_leads else "closed"
                crm = False
            else:
                min_leads = n
                e.rules = parse_rules(RULES.replace("min_leads: 2", f"min_leads: {n}"))
            found = provisional(e, "initech.io")
            now = (
                "none"
                if found is None or not found.opened
                else "adopted"
                if found.adopted_by
                else "closed"
                if found.closed
                else "open"
            )
            assert now == state, (i, steps)
            if found is not None and found.opened:
                claims = fold(found.key, found.updates).domains
                assert claims == (("initech.io",) if state == "open" else ()), (i, steps)
    finally:
        e.close()
