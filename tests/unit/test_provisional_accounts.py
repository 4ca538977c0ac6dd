"""Provisional accounts at ingest (docs/accounts.md#provisional-accounts): unmatched leads on
a business domain open one at `min_leads`; free mail, matched leads and rules without
`accounts.provisional` never do; a CRM account claiming the domain adopts it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError

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
