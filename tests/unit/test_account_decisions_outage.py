"""A save of account decisions that fails for another reason than a version conflict (an
outage) leaves nothing it changed in the cache: the retry writes the next version on top of
what is stored, never on top of versions that were never stored (a gap no reader can fold)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError

from engine.aggregates.account import account_id
from engine.domain.accounts.matching import MemberDecision
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import ev

AT = datetime(2026, 3, 1, tzinfo=UTC)


def _member(lead: str) -> MemberDecision:
    return MemberDecision(
        account="acme", lead_id=lead, joined=True, rule="domain", reason="by domain",
        candidates=("acme",), rules_version="r1", decided_at=AT,
    )  # fmt: skip


def test_a_failed_save_of_account_decisions_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = LeadEngine(env=POPO_ENV)
    app.ingest([ev("account.updated", "acme", {"name": "Acme"})])
    stored = len(list(app.events.get(account_id("acme"))))
    real = app._record
    calls = {"n": 0}

    def once_down(processing: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(processing)

    monkeypatch.setattr(app, "_record", once_down)
    with pytest.raises(OperationalError):
        app.record_account_decisions([], [_member("lead-1")])
    app.record_account_decisions([], [_member("lead-1")])  # the retry after the outage
    versions = [e.originator_version for e in app.events.get(account_id("acme"))]
    assert versions == list(range(1, stored + 2))  # one decision, no gap
