"""Lead-to-account matching as rules data (`accounts.matching`), a pure function of sets.

`match_all` decides every lead's account from the accounts' profiles and the leads' signals;
it reads no order of arrival, so replays, late account updates and shuffled streams agree.
A decision names the rule that matched and why (`Match.reason`), or why none did.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from engine.domain.accounts.profile import AccountProfile

# one definition of an e-mail's domain (engine.domain.facts), re-exported for matching's callers
from engine.domain.facts import ascii_domain as ascii_domain
from engine.domain.facts import email_domain as email_domain
from engine.domain.rules import AccountMatching

_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")
#: sorts before every real time (an account or lead with no activity yet)
_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class LeadSignals:
    """What matching reads of a lead: its `account` attribute, e-mail domain and company."""

    lead_id: str
    account: str | None = None
    email_domain: str | None = None
    company: str | None = None
    last_activity: datetime | None = None

    def __post_init__(self) -> None:
        # accounts' domains are ASCII (the contract's pattern): an international e-mail domain
        # is compared in its ASCII form (bücher.example -> xn--bcher-kva.example)
        if self.email_domain is not None:
            object.__setattr__(self, "email_domain", ascii_domain(self.email_domain))


@dataclass(frozen=True, slots=True)
class Match:
    lead_id: str
    account_id: str | None
    rule: str | None  # explicit, domain, name; None: no account
    reason: str
    candidates: tuple[str, ...] = ()


def normalise_name(name: str | None, legal_suffixes: Iterable[str]) -> str | None:
    """Lower case, accents and punctuation gone, legal suffixes dropped from the end
    ("ACME, Inc." and "Acme Inc" -> "acme"); None when nothing is left."""
    if not name:
        return None
    return _normalise(name, tuple(legal_suffixes))


@functools.lru_cache(maxsize=1 << 16)
def _normalise(name: str, legal_suffixes: tuple[str, ...]) -> str | None:
    """`normalise_name`, remembered: routing normalises every candidate account's name for
    each lead it matches (7,500 calls for 1,280 leads routed in a profile of ingest)."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    words = _SPACE.sub(" ", _PUNCT.sub(" ", text)).split()
    suffixes = frozenset(s.lower() for s in legal_suffixes)
    while len(words) > 1 and words[-1] in suffixes:
        words.pop()
    return " ".join(words) or None


def _parents(domain: str) -> list[str]:
    """`eu.acme.com` -> [eu.acme.com, acme.com] (never a bare top-level label)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@dataclass(frozen=True, slots=True)
class _Index:
    accounts: Mapping[str, AccountProfile]
    by_domain: Mapping[str, tuple[str, ...]]
    by_name: Mapping[str, tuple[str, ...]]
    leads: dict[str, int]  # account id -> leads naming it or on its domains
    activity: dict[str, float]  # account id -> latest activity (POSIX seconds)


MatchIndex = _Index  # what `index` returns; `leads` and `activity` kept up to date by callers


def index(
    accounts: Iterable[AccountProfile], leads: Iterable[LeadSignals], rules: AccountMatching
) -> _Index:
    """The accounts indexed for matching, with the tie-breakers' counts over `leads`."""
    return _index(accounts, sorted(leads, key=lambda lead: lead.lead_id), rules)


def near(lead: LeadSignals, idx: _Index, rules: AccountMatching) -> frozenset[str]:
    """The accounts `lead` counts for in `most_leads` and `latest_activity`: the one it names
    (when known) and those claiming its e-mail's domain. Not a decision."""
    out = set(_domain_candidates(lead, idx.by_domain, rules))
    if lead.account is not None and lead.account in idx.accounts:
        out.add(lead.account)
    return frozenset(out)


def activity_of(profile: AccountProfile, leads: Iterable[LeadSignals]) -> float:
    """`latest_activity` of an account: its latest update and its near leads' latest events."""
    times = [profile.updated_at.timestamp()] if profile.updated_at else []
    times += [lead.last_activity.timestamp() for lead in leads if lead.last_activity]
    return max(times, default=_NEVER)


def _index(
    accounts: Iterable[AccountProfile], leads: list[LeadSignals], rules: AccountMatching
) -> _Index:
    by_id = {a.account_id: a for a in accounts}
    by_domain: dict[str, set[str]] = {}
    by_name: dict[str, set[str]] = {}
    for a in by_id.values():
        for d in a.domains:
            by_domain.setdefault(d, set()).add(a.account_id)
        norm = normalise_name(a.name, rules.legal_suffixes)
        if norm:
            by_name.setdefault(norm, set()).add(a.account_id)
    counts = dict.fromkeys(by_id, 0)
    activity = {k: (a.updated_at.timestamp() if a.updated_at else _NEVER) for k, a in by_id.items()}
    for lead in leads:
        near = set(_domain_candidates(lead, by_domain, rules))
        if lead.account in by_id:
            near.add(lead.account)
        for acc in near:
            counts[acc] += 1
            if lead.last_activity is not None:
                activity[acc] = max(activity[acc], lead.last_activity.timestamp())
    return _Index(
        by_id,
        {d: tuple(sorted(v)) for d, v in by_domain.items()},
        {n: tuple(sorted(v)) for n, v in by_name.items()},
        counts,
        activity,
    )


def _domain_candidates(
    lead: LeadSignals, by_domain: Mapping[str, Iterable[str]], rules: AccountMatching
) -> tuple[str, ...]:
    domain = lead.email_domain
    if not domain or domain in rules.free_mail:
        return ()
    for candidate in _parents(domain):  # the most specific domain an account claims
        if candidate in by_domain:
            return tuple(sorted(by_domain[candidate]))
    return ()


def _rank_key(index: _Index, rules: AccountMatching, account: str) -> tuple[object, ...]:
    parts: list[object] = []
    profile = index.accounts[account]
    for breaker in rules.tie_breakers:
        if breaker == "tier":
            parts.append(profile.tier if profile.tier is not None else 10)
        elif breaker == "most_leads":
            parts.append(-index.leads[account])
        else:  # latest_activity: later first
            parts.append(-index.activity[account])
    parts.append(account)
    return tuple(parts)


def _pick(index: _Index, rules: AccountMatching, candidates: tuple[str, ...]) -> tuple[str, str]:
    """The winning account among several, and why it won."""
    ranked = sorted(candidates, key=lambda a: _rank_key(index, rules, a))
    if len(ranked) == 1:
        return ranked[0], ""
    win, runner = ranked[0], ranked[1]
    w, r = _rank_key(index, rules, win), _rank_key(index, rules, runner)
    for i, breaker in enumerate(rules.tie_breakers):
        if w[i] != r[i]:
            said = f"{_said(index, breaker, win)} vs {_said(index, breaker, runner)}"
            return win, f"; {len(ranked)} candidates, {win} wins on {breaker} ({said})"
    ties = ", ".join(rules.tie_breakers)
    named = ", ".join(ranked)
    return win, f"; {len(ranked)} candidates ({named}) tie on {ties}: the lowest account id wins"


def _said(index: _Index, breaker: str, account: str) -> str:
    if breaker == "tier":
        tier = index.accounts[account].tier
        return f"tier {tier}" if tier is not None else "no tier"
    if breaker == "most_leads":
        return f"{index.leads[account]} leads"
    at = index.activity[account]
    when = "never" if at == _NEVER else datetime.fromtimestamp(at, UTC).isoformat()
    return f"last active {when}"


def match_lead(lead: LeadSignals, index: _Index, rules: AccountMatching) -> Match:
    why_not: list[str] = []
    unknown = ""  # a named account not known: said even when a later rule matches
    for rule in rules.order:
        if rule == "explicit":
            if lead.account is None:
                continue
            if lead.account in index.accounts:
                reason = f"the lead's events name account {lead.account}"
                return Match(lead.lead_id, lead.account, "explicit", reason, (lead.account,))
            why_not.append(f"named account {lead.account} is not known (yet)")
            unknown = f"named account {lead.account} is not known (yet); "
        elif rule == "domain":
            if lead.email_domain and lead.email_domain in rules.free_mail:
                why_not.append(f"{lead.email_domain} is a free-mail domain")
                continue
            found = _domain_candidates(lead, index.by_domain, rules)
            if found:
                win, tie = _pick(index, rules, found)
                reason = f"{unknown}e-mail domain {lead.email_domain} is a domain of {win}{tie}"
                return Match(lead.lead_id, win, "domain", reason, found)
        else:
            norm = normalise_name(lead.company, rules.legal_suffixes)
            found = index.by_name.get(norm, ()) if norm else ()
            if found:
                win, tie = _pick(index, rules, found)
                reason = (
                    f"{unknown}company {lead.company!r} normalises to {norm!r}, "
                    f"the name of {win}{tie}"
                )
                return Match(lead.lead_id, win, "name", reason, found)
    why_not.append("no account matches by " + ", ".join(rules.order))
    return Match(lead.lead_id, None, None, "; ".join(why_not))


def match_all(
    accounts: Iterable[AccountProfile], leads: Iterable[LeadSignals], rules: AccountMatching
) -> dict[str, Match]:
    """Every lead's match (by lead id). Depends only on the sets given, not their order."""
    lead_list = sorted(leads, key=lambda lead: lead.lead_id)
    index = _index(accounts, lead_list, rules)
    return {lead.lead_id: match_lead(lead, index, rules) for lead in lead_list}


@dataclass(frozen=True, slots=True)
class MemberDecision:
    """A lead joining (`joined`) or leaving an account, as recorded on the account."""

    account: str  # the account's key
    lead_id: str
    joined: bool
    rule: str | None
    reason: str
    candidates: tuple[str, ...]
    rules_version: str
    decided_at: datetime | None
    #: the lead's match before its first recorded decision (taken before decisions were
    #: recorded, migration 22), recorded just before the decision that changes it, so a
    #: replay knows where the lead was (docs/accounts.md); a no-op once its join is recorded
    baseline: bool = False


def name_words(name: str | None) -> str | None:
    """A name normalised but with no legal suffix dropped: what the write-side account
    directory keeps, so any `legal_suffixes` list can be applied when matching (the
    normalised name is always these words or their first ones)."""
    return normalise_name(name, ())


def domain_parents(domain: str | None) -> list[str]:
    """The domains an account may claim for an e-mail domain: itself and its parents."""
    return _parents(domain) if domain else []


@dataclass(frozen=True, slots=True)
class OwnerMatch:
    """The match the routing step takes (`match_for_routing`): `match` as the projector
    decides it, or `match` None with `why` when ingest cannot know it."""

    match: Match | None
    why: str = ""


def match_for_routing(
    lead: LeadSignals, accounts: Iterable[AccountProfile], rules: AccountMatching
) -> OwnerMatch:
    """The lead's match at routing time, from the accounts that can match it (the one it
    names, those claiming its e-mail domain or a parent, those whose name starts with its
    company's normalised words: the write-side directory's answer).

    Equal to `match_lead` over every account, except where the tie-breakers reach
    `most_leads` or `latest_activity` with several candidates left: those need every lead's
    signals, which only the projector holds, so the match is not decided here (`why` says so)
    and routing goes on to the queues."""
    idx = _index(accounts, [], rules)
    match = match_lead(lead, idx, rules)
    if len(match.candidates) < 2:
        return OwnerMatch(match)
    left = list(match.candidates)
    for breaker in rules.tie_breakers:
        if len(left) == 1:
            break
        if breaker != "tier":
            ids = ", ".join(sorted(left))
            prior = rules.tie_breakers[: rules.tie_breakers.index(breaker)]
            tied = f" and tie on {', '.join(prior)}" if prior else ""
            return OwnerMatch(
                None,
                f"accounts {ids} match the lead by {match.rule}{tied}; {breaker} ranks them "
                "by every lead's signals, which only the projector holds: not decided at routing",
            )
        best = min(_tier(idx, a) for a in left)
        left = [a for a in left if _tier(idx, a) == best]
    winner = min(left)
    assert winner == match.account_id, (winner, match)
    return OwnerMatch(match)


def _tier(idx: _Index, account: str) -> int:
    tier = idx.accounts[account].tier
    return tier if tier is not None else 10
