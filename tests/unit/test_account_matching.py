"""Lead-to-account matching: each rule, each tie-breaker, free mail, normalised names, and
independence from the order accounts and leads arrive in (a hypothesis property)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.domain.accounts.matching import LeadSignals, email_domain, match_all, normalise_name
from engine.domain.accounts.profile import AccountProfile, fold
from engine.domain.rules import AccountMatching, load_rules

RULES = load_rules().accounts.matching
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def acct(key: str, name: str | None = None, *domains: str, **kw: Any) -> AccountProfile:
    return AccountProfile(key, name=name, domains=tuple(domains), updated_at=T0, **kw)


def lead(key: str, **kw: Any) -> LeadSignals:
    return LeadSignals(key, **kw)


def test_explicit_account_comes_first() -> None:
    accounts = [acct("a1", "Acme", "acme.com"), acct("a2", "Other", "other.com")]
    m = match_all(accounts, [lead("l", account="a2", email_domain="acme.com")], RULES)["l"]
    assert (m.account_id, m.rule) == ("a2", "explicit")
    assert "name account a2" in m.reason


def test_an_unknown_explicit_account_falls_through_and_says_so() -> None:
    m = match_all(
        [acct("a1", "Acme", "acme.com")], [lead("l", account="zz", email_domain="acme.com")], RULES
    )["l"]
    assert (m.account_id, m.rule) == ("a1", "domain")
    assert m.reason.startswith("named account zz is not known (yet); e-mail domain acme.com")
    m = match_all(
        [acct("a1", "Acme Inc", "acme.com")], [lead("l", account="zz", company="ACME")], RULES
    )["l"]
    assert (m.account_id, m.rule) == ("a1", "name")
    assert m.reason.startswith("named account zz is not known (yet); company 'ACME'")
    m = match_all([], [lead("l", account="zz")], RULES)["l"]
    assert m.account_id is None and "zz is not known" in m.reason


def test_email_domain_and_its_parents_match() -> None:
    accounts = [acct("a1", "Acme", "acme.com")]
    m = match_all(accounts, [lead("l", email_domain="eu.acme.com")], RULES)["l"]
    assert (m.account_id, m.rule) == ("a1", "domain")
    assert "eu.acme.com" in m.reason


def test_an_international_email_domain_matches_the_accounts_ascii_form() -> None:
    """Lead e-mails may be international; accounts' domains are ASCII (the contract): the lead's
    domain is compared in its IDNA form (a trial found bücher.example never matched)."""
    accounts = [acct("a1", "Bücher", "xn--bcher-kva.example")]
    for domain in ("bücher.example", "EU.Bücher.Example.", "xn--bcher-kva.example"):
        m = match_all(accounts, [lead("l", email_domain=domain)], RULES)["l"]
        assert (m.account_id, m.rule) == ("a1", "domain"), domain
    assert LeadSignals("l", email_domain="Bücher.example").email_domain == "xn--bcher-kva.example"
    assert email_domain("x@BÜCHER.example") == "xn--bcher-kva.example"
    assert email_domain("x@-bad-\u00e9-.example") is not None  # kept as is, matches no account


def test_free_mail_never_matches_even_if_an_account_claims_it() -> None:
    accounts = [acct("a1", "Gmail Fans", "gmail.com")]
    m = match_all(accounts, [lead("l", email_domain="gmail.com")], RULES)["l"]
    assert m.account_id is None and "free-mail" in m.reason


def test_free_mail_lead_matches_on_its_normalised_company() -> None:
    accounts = [acct("a1", "ACME, Inc.", "acme.com")]
    m = match_all(accounts, [lead("l", email_domain="gmail.com", company="Acme Inc")], RULES)["l"]
    assert (m.account_id, m.rule) == ("a1", "name")
    assert "'acme'" in m.reason


def test_normalise_name_drops_case_punctuation_accents_and_legal_suffixes() -> None:
    suffixes = RULES.legal_suffixes
    assert normalise_name("ACME, Inc.", suffixes) == "acme"
    assert normalise_name("Acme Corp. Ltd", suffixes) == "acme"
    assert normalise_name("Société Générale S.A.", suffixes) == "societe generale s a"
    assert normalise_name("Société Générale SA", suffixes) == "societe generale"
    assert normalise_name("Inc", suffixes) == "inc"  # never reduced to nothing
    assert normalise_name("  ", suffixes) is None


def test_tie_on_domain_broken_by_tier() -> None:
    accounts = [acct("a1", "Acme", "acme.com", tier=3), acct("a2", "Acme EU", "acme.com", tier=1)]
    m = match_all(accounts, [lead("l", email_domain="acme.com")], RULES)["l"]
    assert m.account_id == "a2" and "wins on tier (tier 1 vs tier 3)" in m.reason
    assert m.candidates == ("a1", "a2")


def test_tie_on_name_broken_by_most_leads() -> None:
    accounts = [acct("a1", "Acme Inc", "acme1.com"), acct("a2", "Acme LLC", "acme2.com")]
    leads = [
        lead("x1", email_domain="acme2.com"),
        lead("x2", email_domain="acme2.com"),
        lead("x3", email_domain="acme1.com"),
        lead("l", email_domain="gmail.com", company="acme"),
    ]
    m = match_all(accounts, leads, RULES)["l"]
    assert m.account_id == "a2" and "most_leads (2 leads vs 1 leads)" in m.reason


def test_tie_broken_by_latest_activity_then_account_id() -> None:
    accounts = [acct("a1", "Acme", "acme1.com"), acct("a2", "Acme", "acme2.com")]
    leads = [
        lead("x1", email_domain="acme1.com", last_activity=T0 + timedelta(days=9)),
        lead("x2", email_domain="acme2.com", last_activity=T0 + timedelta(days=2)),
        lead("l", company="Acme"),
    ]
    m = match_all(accounts, leads, RULES)["l"]
    assert m.account_id == "a1" and "latest_activity" in m.reason
    even = match_all(accounts, [lead("l", company="Acme")], RULES)["l"]
    assert even.account_id == "a1" and "lowest account id" in even.reason


def test_rule_order_and_tie_breakers_are_data() -> None:
    rules = AccountMatching(
        order=("name", "domain"), tie_breakers=("most_leads",), free_mail_domains=()
    )
    accounts = [acct("a1", "Acme", "acme.com", tier=1), acct("a2", "Beta", "beta.com")]
    m = match_all(accounts, [lead("l", email_domain="acme.com", company="Beta")], rules)["l"]
    assert (m.account_id, m.rule) == ("a2", "name")


def test_no_match_says_why() -> None:
    m = match_all([acct("a1", "Acme", "acme.com")], [lead("l", email_domain="x.io")], RULES)["l"]
    assert m.account_id is None and m.rule is None and "no account matches" in m.reason


def test_profile_fold_takes_each_field_from_the_latest_update() -> None:
    updates = [
        (T0 + timedelta(days=2), "s", "2", {"tier": 1}),
        (T0, "s", "1", {"name": "Acme", "tier": 3, "domains": ["Acme.com"]}),
    ]
    p = fold("a1", updates)
    assert (p.name, p.tier, p.domains, p.updated_at) == ("Acme", 1, ("acme.com",), updates[0][0])
    assert fold("a1", list(reversed(updates))) == p


NAMES = st.sampled_from(["Acme", "ACME Inc.", "Acme LLC", "Beta", "Beta GmbH", "Gamma"])
DOMAINS = st.sampled_from(["acme.com", "eu.acme.com", "beta.io", "gamma.de", "gmail.com"])
ACCOUNT_KEYS = st.sampled_from(["a1", "a2", "a3", "a4"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], list[LeadSignals]]:
    updates = [
        (
            draw(ACCOUNT_KEYS),
            (
                T0 + timedelta(hours=draw(st.integers(0, 50))),
                "s",
                str(i),
                {
                    "name": draw(st.none() | NAMES),
                    "domains": draw(st.none() | st.lists(DOMAINS, max_size=2)),
                    "tier": draw(st.none() | st.integers(1, 3)),
                },
            ),
        )
        for i in range(draw(st.integers(0, 8)))
    ]
    leads = [
        LeadSignals(
            f"l{i}",
            account=draw(st.none() | ACCOUNT_KEYS | st.just("unknown")),
            email_domain=draw(st.none() | DOMAINS | st.just("sub.beta.io")),
            company=draw(st.none() | NAMES),
            last_activity=T0 + timedelta(hours=draw(st.integers(0, 50))),
        )
        for i in range(draw(st.integers(0, 8)))
    ]
    return updates, leads


def _decide(updates: list[tuple[str, Any]], leads: list[LeadSignals]) -> dict[str, Any]:
    by_account: dict[str, list[Any]] = {}
    for key, update in updates:
        by_account.setdefault(key, []).append(update)
    profiles = [fold(k, v) for k, v in by_account.items()]
    return match_all(profiles, leads, RULES)


@settings(max_examples=200, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_matching_is_independent_of_arrival_order(world: Any, rnd: Any) -> None:
    updates, leads = world
    expected = _decide(updates, leads)
    shuffled_updates, shuffled_leads = list(updates), list(leads)
    rnd.shuffle(shuffled_updates)
    rnd.shuffle(shuffled_leads)
    assert _decide(shuffled_updates, shuffled_leads) == expected
    for m in expected.values():  # every decision names a rule and a reason, or why not
        assert m.reason and ((m.account_id is None) == (m.rule is None))


_LABEL = st.text(alphabet="abcXYZ09-éüßÖ\u4e2d ", min_size=0, max_size=8)
EMAILS = st.builds(
    lambda local, labels, dot: f"{local}@{'.'.join(labels)}{'.' if dot else ''}",
    st.text(alphabet="ab.+Z", min_size=1, max_size=5),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.booleans(),
)


@given(EMAILS)
@example("Z@. .")  # trailing dots and blanks mixed
@example("x@BÜCHER.example.")
@example("x@a\u3002")  # IDNA maps the ideographic full stop to a dot
def test_facts_and_matching_agree_on_an_emails_domain(email: str) -> None:
    """One e-mail domain everywhere: the profile fit rules read, the `email_domain` kept when
    the address is erased or sealed, and what matching compares (ASCII, IDNA) are the same."""
    from engine.domain import facts
    from engine.domain.accounts import matching

    assert matching.email_domain is facts.email_domain  # one definition
    expected = email_domain(email)
    fact = facts.Fact("e1", "lead.captured", "src", T0, {"email": email})
    attrs, _ = facts.profile_of([fact])
    assert attrs.get("email_domain") == expected
    assert facts.strip_pii("lead.captured", {"email": email}).get("email_domain") == expected
    if expected is not None:  # the kept form needs no more normalising: matching compares it
        assert LeadSignals("l", email_domain=expected).email_domain == expected
        assert email_domain("x@" + expected) == expected  # kept, it compares as a fresh one
