"""`account history` lists each lead's match decisions as they were taken (recorded on the
account), so a lead re-decided later still shows how it joined."""

from __future__ import annotations

import json
from typing import Any

from engine.domain.contract import validate_event
from engine.runtime import Runtime
from tests.factory import raw


def _run(rt: Runtime, events: list[dict[str, Any]]) -> None:
    rt.app.ingest([validate_event(e) for e in events])
    rt.projector.run(until_caught_up=True)


def test_history_shows_the_match_each_lead_joined_by(runtime: Runtime, leadengine: Any) -> None:
    _run(
        runtime,
        [
            raw("account.updated", "a1", {"name": "Acme Inc"}, days=0),
            raw("lead.captured", "l1", {"email": "pat@acme.com", "company": "Acme"}, days=1),
            raw("lead.captured", "l2", {"email": "kim@gmail.com", "company": "ACME"}, days=1),
        ],
    )
    # a1 claims acme.com: l1 is decided again, by domain; l2 stays by name
    _run(runtime, [raw("account.updated", "a1", {"domains": ["acme.com"]}, days=2)])
    # a1 is renamed: l2 (free mail, company only) leaves it
    _run(runtime, [raw("account.updated", "a1", {"name": "Globex"}, days=3)])

    code, out = leadengine("account", "history", "a1", "--format", "json")
    assert code == 0
    entries = json.loads(out)["history"]
    leads = [
        (e["what"], e["detail"].split(":")[0])
        for e in entries
        if e["what"] in ("lead matched", "lead left")
    ]
    assert leads == [
        ("lead matched", "lead l1 by name"),
        ("lead matched", "lead l2 by name"),
        ("lead matched", "lead l1 by domain"),
        ("lead left", "lead l2"),
    ]
    first = next(e for e in entries if e["detail"].startswith("lead l1 by name"))
    assert "company 'Acme' normalises to 'acme', the name of a1" in first["detail"]
    assert first["at"].startswith("2026-03-02")  # when it joined, not when re-decided
    left = next(e for e in entries if e["what"] == "lead left")
    assert "no account matches" in left["detail"] and left["at"].startswith("2026-03-04")
    code, out = leadengine("account", "history", "a1")
    assert code == 0 and "matches as decided then" in out
