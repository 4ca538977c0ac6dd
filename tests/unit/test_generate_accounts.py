"""`leadengine generate --accounts N --free-mail S --naming S`: the stream validates, has
exactly N CRM accounts with several people each, leads naming their account, free-mail leads,
and same-name accounts that only the tie-breakers tell apart (matched by the shipped rules)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main as cli
from engine.domain.accounts.matching import LeadSignals, match_all
from engine.domain.accounts.profile import fold
from engine.domain.contract import validate_event
from engine.domain.rules import load_rules

RULES = load_rules().accounts.matching


def _generate(tmp_path: Path, *argv: str) -> list[dict[str, Any]]:
    path = tmp_path / "journeys.jsonl"
    assert cli.main(["generate", "--leads", "600", "--seed", "4", *argv, "-o", str(path)]) == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


def _matches(events: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, LeadSignals]]:
    """Every lead's match by the shipped rules over the stream's accounts, as the projector
    decides it (the lead's latest e-mail, company and named account)."""
    updates: dict[str, list[Any]] = {}
    leads: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e["time"]):
        env = validate_event(e)  # every line is a valid event
        if env.type == "account.updated":
            updates.setdefault(env.subject, []).append(
                (env.occurred_at, env.source, env.id, dict(env.data))
            )
        elif env.type == "lead.captured":
            lead = leads.setdefault(env.subject, {})
            lead.update(email=env.data.get("email"), company=env.data.get("company"))
            if env.account is not None:
                lead["account"] = env.account
    accounts = [fold(key, u) for key, u in updates.items()]
    signals = {
        k: LeadSignals(
            k,
            account=v.get("account"),
            email_domain=v["email"].rsplit("@", 1)[1],
            company=v.get("company"),
        )
        for k, v in leads.items()
    }
    return match_all(accounts, signals.values(), RULES), signals


def test_accounts_n_gives_n_accounts_with_people_free_mail_and_ambiguous_names(
    tmp_path: Path,
) -> None:
    events = _generate(tmp_path, "--accounts", "40", "--free-mail", "0.2", "--naming", "0.1")
    accounts = {e["subject"] for e in events if e["type"] == "account.updated"}
    assert len(accounts) == 40
    matches, signals = _matches(events)
    rules = Counter(m.rule for m in matches.values())
    assert rules["explicit"] and rules["domain"] and rules["name"], rules
    members = Counter(m.account_id for m in matches.values() if m.account_id)
    assert sum(n >= 3 for n in members.values()) >= 20, members  # several people each
    free = [k for k, s in signals.items() if s.email_domain == "gmail.com"]
    assert len(free) >= 0.1 * len(signals)  # ~20% of the account leads
    assert all(matches[k].rule != "domain" for k in free)
    # same-name accounts: a free-mail lead matched by name among several, a tie-breaker
    # (tier first) or the account id deciding, and the reason saying which
    ambiguous = [m for m in matches.values() if m.rule == "name" and len(m.candidates) > 1]
    assert ambiguous, "no lead matched by an ambiguous name"
    assert all(" candidates" in m.reason for m in ambiguous)
    assert any(" wins on tier " in m.reason for m in ambiguous)


def test_accounts_zero_is_the_same_journeys_without_accounts(tmp_path: Path) -> None:
    events = _generate(tmp_path, "--accounts", "0")
    assert not [e for e in events if e["type"] == "account.updated" or "account" in e]


def test_the_default_stream_is_unchanged_by_the_options(tmp_path: Path) -> None:
    """Defaults given explicitly give the default stream (same seed, same file)."""
    plain = _generate(tmp_path, "--leads", "150")
    spelled = _generate(tmp_path, "--leads", "150", "--free-mail", "0.1", "--naming", "0.15")
    assert plain == spelled


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--accounts", "-1"], "expected 0 to 100,000"),
        (["--accounts", "x" * 500], "(500 characters)"),
        (["--free-mail", "0.7", "--naming", "0.6"], "add up to at most 1"),
    ],
)
def test_bad_account_options_are_refused_clearly(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = cli.main(["generate", "--leads", "5", *argv])
    except SystemExit as exc:  # argparse refuses its own arguments
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert says in err and len(err) < 1000, err
