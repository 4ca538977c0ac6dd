"""What-if over accounts: how many accounts meet the MQA rule under each rules, from the leads
a what-if replayed (engine/domain/whatif.py) and the accounts as the CRM sent them.

The same pure functions as the projector's settling (matching, account score, MQA rule) over
the replayed leads' final state: each lead's signals (named account, e-mail domain, company,
latest activity) and its engagement under the rules in question. A count of accounts that
qualify at the end of the replay, not of MQA decisions in time order (a recorded MQA is kept
once taken, even if the account falls below later; docs/accounts.md)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engine.domain.accounts.matching import LeadSignals, match_all
from engine.domain.accounts.profile import AccountProfile
from engine.domain.accounts.scoring import Member, score, unmet
from engine.domain.facts import profile_of
from engine.domain.rules import Rules
from engine.domain.scoring import best_of_profile

#: the `account` attribute in a lead fact's data (engine/services/application.py)
ACCOUNT_ATTRIBUTE = "account"


def signals(key: str, lead: Any) -> LeadSignals | None:
    """What matching reads of a replayed lead (None: no fact yet)."""
    if not lead.facts:
        return None
    attrs, _ = profile_of(lead.facts)
    named = [
        (f.occurred_at, i, f.data[ACCOUNT_ATTRIBUTE])
        for i, f in enumerate(lead.facts)
        if f.data.get(ACCOUNT_ATTRIBUTE)
    ]
    last = max(lead.facts, key=lambda f: (f.occurred_at, f.seq))
    return LeadSignals(
        key,
        account=max(named)[2] if named else None,
        email_domain=attrs.get("email_domain"),
        company=attrs.get("company"),
        last_activity=last.occurred_at,
    )


def member(key: str, lead: Any, rules: Rules) -> Member:
    """A replayed lead as an account's member under `rules`: its engagement and its best
    persona (its buying-group role), as the projector's account_signals row has them."""
    attrs, origin = profile_of(lead.facts)
    persona = best_of_profile(attrs, origin, rules.personas)
    engagement = lead.current_score(rules, explain=False).engagement
    return Member(key, engagement, persona.persona if persona else None)


def qualifying(
    accounts: Iterable[AccountProfile], leads: Sequence[tuple[LeadSignals, Member]], rules: Rules
) -> list[str]:
    """The accounts (keys, sorted) that meet `rules`' MQA rule with `leads` (each lead's
    signals and itself as a member, replayed under `rules`)."""
    profiles = list(accounts)
    if not profiles:
        return []
    matches = match_all(profiles, [s for s, _ in leads], rules.accounts.matching)
    members: dict[str, list[Member]] = {}
    for s, m in leads:
        match = matches[s.lead_id]
        if match.account_id is not None:
            members.setdefault(match.account_id, []).append(m)
    return sorted(
        p.account_id
        for p in profiles
        if not unmet(score(p, members.get(p.account_id, []), rules.accounts), rules.accounts)
    )
