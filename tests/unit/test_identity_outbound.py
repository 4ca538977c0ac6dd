"""The outbound record of an identity decision (`lead.identity_decided`, docs/integration.md):
for whatever identity facts the contract accepts, it validates against its exported schema and
its `data` is exactly the ids, the relation, who and when: neither key nor the free-text reason,
before the erasure or after it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from engine.aggregates.lead import Lead
from engine.domain.contract import Envelope, validate_event
from engine.domain.decisions import TYPES, decision_id, to_cloudevent
from engine.domain.errors import InvalidEvent
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import raw

ROOT = Path(__file__).resolve().parents[2]
KIND = "lead.identity_decided"
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / f"{KIND}.json").read_text()))

KEYS = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
TEXT = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")
FACTS = st.lists(st.sampled_from(["identity.linked", "lead.merged", "lead.unmerged"]), min_size=1,
                 max_size=4)  # fmt: skip


def fact(kind: str, subject: str, other: str, by: str, reason: str, n: int) -> Envelope:
    data: dict[str, Any] = (
        {"to": other, "reason": reason}
        if kind == "identity.linked"
        else {"winner": other, "by": by, "reason": reason}
    )
    return validate_event(raw(kind, subject, data, days=1 + n, id=f"i{n}"))


def test_identity_decisions_are_an_outbound_type() -> None:
    assert TYPES[Lead.Linked] == KIND


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=KEYS, other=KEYS, by=TEXT, reason=TEXT, kinds=FACTS, forget=st.booleans())
def test_an_identity_decision_carries_ids_only(
    rules: Rules, subject: str, other: str, by: str, reason: str, kinds: list[str], forget: bool
) -> None:
    try:
        facts = [
            validate_event(raw("lead.captured", other, {"email": "ada@example.org"}, id="c1")),
            *(fact(k, subject, other, by, reason, n) for n, k in enumerate(kinds)),
        ]
    except InvalidEvent:
        assume(False)  # not what the contract accepts (the same key twice, say)
        return
    app = LeadEngine(rules=rules, env=POPO_ENV)
    try:
        app.ingest(facts)
        lead, winner = app.get_lead(subject), app.get_lead(other)
        if forget:
            app.forget(subject, reason="ticket", by="dpo", at=lead.modified_on)
        key = pseudonym(lead.id) if forget else subject
        linked = [e for e in app.repository.event_store.get(lead.id) if isinstance(e, Lead.Linked)]
        assert len(linked) == len(kinds)
        for event, kind in zip(linked, kinds, strict=True):
            doc = to_cloudevent(event, lead.id, key, rules)
            assert doc is not None
            SCHEMA.validate(doc)
            assert doc["id"] == decision_id(lead.id, event.originator_version)
            assert doc["subject"] == key
            relation = {"identity.linked": "linked", "lead.merged": "merged"}.get(kind, "unmerged")
            assert doc["data"] == {
                "lead_id": str(lead.id),
                "version": event.originator_version,
                "relation": relation,
                "other_id": str(winner.id),
                "event_id": event.event_id,
                "source": "urn:test",
                "by": None if kind == "identity.linked" else by,
                "occurred_at": event.occurred_at.isoformat(),
                "subject_wins": False,  # upstream decisions: the subject is the alias / loser
            }
    finally:
        app.close()
