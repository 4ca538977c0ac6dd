"""Crypto-shredding on the in-memory store: personal fields sealed per lead, forget, and after."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from engine.domain.errors import LeadEngineError
from engine.domain.facts import profile_of
from engine.domain.rules import Rules
from engine.postgres.keyfile import MasterKeyError, load_master_key, parse_master_key
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import ev, icp_profile, line, raw, touch

EMAIL = "ada.lovelace@analytical.example"
NAME = "Ada Lovelace"
PHONE = "+44 20 7946 0000"
NOTES = "Ada said call back after her trip to Turin"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _person(app: LeadEngine, key: str = "p-1") -> None:
    app.ingest(
        [
            ev(
                "lead.captured",
                key,
                {"email": EMAIL, "name": NAME, "phone": PHONE, "company": "AE"},
            ),
            icp_profile(key),
            touch("touch.form_submitted", key, form="demo-request", days=1),
            touch("touch.page_viewed", key, days=2),
        ]
    )


def _stored(app: LeadEngine, key: str = "p-1") -> list[bytes]:
    return [e.state for e in app.recorder.select_events(app.lead_id(key))]


def _clear(states: list[bytes]) -> bytes:
    """The stored states with each sealed value (random base64) blanked: a short needle such as
    "Ada" turns up by chance in ciphertext, which holds nothing in clear."""

    blanked: list[str] = []

    def blank(node: Any) -> Any:
        if isinstance(node, dict):
            blanked.extend(v for k, v in node.items() if k == "sealed")
            return {k: "" if k == "sealed" else blank(v) for k, v in node.items()}
        if isinstance(node, list):
            return [blank(v) for v in node]
        return node

    clear = b"".join(json.dumps(blank(json.loads(s))).encode() for s in states)
    assert blanked and all(isinstance(x, str) and len(x) > 20 for x in blanked)
    return clear


def _needles() -> list[bytes]:
    return [s.encode() for s in (EMAIL, NAME, PHONE, NOTES, "lovelace", "Ada")]


def test_personal_fields_are_sealed_at_rest_and_open_for_the_app(memory_app: LeadEngine) -> None:
    _person(memory_app)
    stored = _clear(_stored(memory_app))
    assert not any(n in stored for n in _needles())
    assert b"analytical.example" in stored  # the domain stays in clear for fit rules
    captured = json.loads(_stored(memory_app)[1])["data"]
    assert captured["_pii"]["fields"] == ["email", "name", "phone"]
    assert captured["company"] == "AE"
    memory_app.clear_cache()
    lead = memory_app.get_lead("p-1")
    assert lead.facts[0].data["email"] == EMAIL and lead.facts[0].data["name"] == NAME


def test_forget_keeps_every_number_and_loses_the_person(memory_app: LeadEngine) -> None:
    _person(memory_app)
    memory_app.ingest([ev("touch.call_logged", "p-1", _call(NOTES), days=3)])
    before = memory_app.get_lead("p-1")
    score, stage, owner = before.current_score(memory_app.rules), before.stage, before.owner
    profile = profile_of(before.facts)[0]

    result = memory_app.forget("p-1", reason="ticket 7", by="dpo", at=NOW)
    assert result.key_shredded and not result.already
    assert {EMAIL, NAME, PHONE, NOTES} <= result.personal_values
    assert "personal_values" not in repr(result)  # never printed by accident

    memory_app.clear_cache()
    after = memory_app.get_lead("p-1")
    assert after.erased_at == NOW
    assert after.current_score(memory_app.rules) == score
    assert (after.stage, after.owner) == (stage, owner)
    assert profile_of(after.facts)[0] == profile
    text = repr([f.data for f in after.facts]).encode()
    assert not any(n in text for n in _needles())
    assert after.facts[0].data["_erased"] == ["email", "name", "phone"]
    assert after.facts[-1].data["_erased"] == ["notes"]
    assert after.facts[0].data["email_domain"] == "analytical.example"

    again = memory_app.forget("p-1", reason="ticket 7", by="dpo", at=NOW)
    assert again.already and not again.key_shredded
    assert memory_app.get_lead("p-1").version == after.version  # nothing more recorded


def test_later_personal_data_is_stripped_by_default(memory_app: LeadEngine) -> None:
    _person(memory_app)
    memory_app.forget("p-1", reason="ticket 8", by="dpo", at=NOW)
    result = memory_app.ingest(
        [
            ev("lead.captured", "p-1", {"email": EMAIL, "name": NAME}, days=5),
            ev("touch.call_logged", "p-1", _call(NOTES), days=6),
        ]
    )
    assert result.accepted == 2
    stored = _clear(_stored(memory_app))
    assert not any(n in stored for n in _needles())
    memory_app.clear_cache()
    facts = memory_app.get_lead("p-1").facts
    assert facts[-2].data == {
        "email_domain": "analytical.example",
        "schema_version": 1,
        "_erased": ["email", "name"],
    }


def test_later_personal_data_can_be_dropped_by_rule(rules: Rules) -> None:
    strict = rules.model_copy(
        update={"privacy": rules.privacy.model_copy(update={"after_erasure": "drop"})}
    )
    app = LeadEngine(rules=strict, env=POPO_ENV)
    _person(app)
    app.forget("p-1", reason="ticket 9", by="dpo", at=NOW)
    result = app.ingest(
        [
            ev("touch.call_logged", "p-1", _call(NOTES), days=6),  # carries notes: dropped
            touch("touch.page_viewed", "p-1", days=6),  # nothing personal: recorded
        ]
    )
    assert (result.accepted, result.ignored, result.duplicates) == (1, 1, 0)

    # the file / stdin ingester reports them too (the Kafka consumer's stats use the same result)
    from engine.consumers.lines import ingest_lines

    again = [
        line(raw("touch.call_logged", "p-1", _call(NOTES), days=7)),
        line(raw("touch.page_viewed", "p-1", {"channel": "web"}, days=7)),
    ]
    kept: list[Any] = []

    class Letters:
        def add(self, letters: list[Any]) -> None:
            kept.extend(letters)

    report = ingest_lines(again, origin="test", app=app, deadletters=Letters())  # type: ignore[arg-type]
    assert not kept, [str(letter.error) for letter in kept]
    assert report.as_dict() == {
        "lines": 2,
        "accepted": 1,
        "duplicates": 0,
        "ignored": 1,
        "rejected": 0,
        "conflicts": 0,
        "unknown_fields": 0,
    }


def test_a_sealed_value_moved_to_another_event_does_not_open(memory_app: LeadEngine) -> None:
    _person(memory_app)
    memory_app.ingest([ev("touch.call_logged", "p-1", _call(NOTES), days=3)])
    events = list(memory_app.recorder.select_events(memory_app.lead_id("p-1")))
    call = events[-1]
    other = events[1]  # the captured event: same lead, another version
    moved = type(call)(
        originator_id=call.originator_id,
        originator_version=call.originator_version,
        topic=call.topic,
        state=call.state.replace(
            json.loads(call.state)["data"]["_pii"]["sealed"].encode(),
            json.loads(other.state)["data"]["_pii"]["sealed"].encode(),
        ),
    )
    with pytest.raises(LeadEngineError, match="does not open with its key"):
        memory_app.mapper.to_domain_event(moved)


def test_projections_read_events_without_opening_them(memory_app: LeadEngine) -> None:
    _person(memory_app)
    stored = memory_app.recorder.select_events(memory_app.lead_id("p-1"))[1]
    sealed = memory_app.sealed_mapper.to_domain_event(stored)
    assert "email" not in sealed.data and sealed.data["email_domain"] == "analytical.example"


def test_master_key_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="expected 32 random bytes in base64, got 5 bytes"):
        parse_master_key(SecretStr(base64.b64encode(b"short").decode()), "LEADENGINE_MASTER_KEY")
    with pytest.raises(MasterKeyError, match="does not exist"):
        load_master_key(None, tmp_path / "missing.key", tmp_path)
    made = load_master_key(None, None, tmp_path / "home")
    assert len(made) == 32 and (tmp_path / "home" / "master.key").stat().st_mode & 0o777 == 0o600
    assert load_master_key(None, None, tmp_path / "home") == made  # the same file next time


def _call(notes: str) -> dict[str, object]:
    return {
        "channel": "sales",
        "direction": "outbound",
        "outcome": "connected",
        "rep": "rep-1",
        "notes": notes,
    }


def test_the_lead_key_is_sealed_at_rest_and_a_pseudonym_once_forgotten(
    memory_app: LeadEngine,
) -> None:
    _person(memory_app, key=EMAIL)  # upstream keys the lead by its email address
    stored = memory_app.recorder.select_events(memory_app.lead_id(EMAIL))
    assert not any(EMAIL.encode() in e.state for e in stored)
    started = json.loads(stored[0].state)
    assert started["_pii"]["fields"] == ["key"] and started["key"].startswith("erased-")
    # every mapper with keys opens it: the read model shows the key until it is forgotten
    assert memory_app.sealed_mapper.to_domain_event(stored[0]).key == EMAIL
    assert memory_app.mapper.to_domain_event(stored[0]).key == EMAIL

    result = memory_app.forget(EMAIL, reason="ticket 1", by="dpo", at=NOW)
    shown = f"erased-{result.lead_id.hex[:12]}"
    assert result.pseudonym == shown and EMAIL not in repr(result)
    assert memory_app.mapper.to_domain_event(stored[0]).key == shown
    memory_app.clear_cache()
    assert memory_app.get_lead(EMAIL).key == shown  # still found by its key
