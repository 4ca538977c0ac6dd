"""Evolution on a real PostgreSQL: an event carrying a field the contract does not name is
recorded and counted; the field is kept sealed (no table holds it in clear), the person's own
export shows it, `forget` takes it away; strict rules dead-letter the event naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.runtime import Runtime
from tests.factory import line, raw
from tests.integration.test_erasure import _search

SECRET = "utm-term-5be1c0"
KEY = "evo-1"


def _events() -> list[bytes]:
    captured = raw("lead.captured", KEY, {"email": "eve@acme.example", "utm_term": SECRET})
    captured["partnerref"] = "partner-77"
    touch = raw("touch.page_viewed", KEY, {"channel": "web", "utm_term": SECRET}, days=1)
    return [line(captured), line(touch)]


def _ingest(leadengine: Any, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(_events()) + b"\n")
    code, out = leadengine("ingest", str(path), "--format", "json")
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_kept_unknown_fields_are_sealed_exported_and_forgotten(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    doc = _ingest(leadengine, tmp_path)
    assert (doc["accepted"], doc["rejected"], doc["unknown_fields"]) == (2, 0, 3)
    assert _search(runtime, [SECRET.encode(), b"partner-77"]) == []  # sealed in the store
    code, out = leadengine("lead", "export", KEY)
    assert code == 0
    export = json.loads(out)
    facts = [e for e in export["events"] if e["kind"] == "Lead.FactRecorded"]
    assert facts[0]["extra"] == {"data": {"utm_term": SECRET}, "attributes": {"partnerref":
                                 "partner-77"}}  # fmt: skip
    code, out = leadengine("lead", "history", KEY, "--format", "json")
    assert code == 0 and "+kept: data.utm_term" in out and SECRET not in out
    code, _ = leadengine("forget", KEY, "--reason", "ticket 14", "--by", "dpo")
    assert code == 0
    code, out = leadengine("lead", "export", export["aggregate_id"])  # not by key any more
    assert code == 0 and SECRET not in out and "partner-77" not in out
    assert _search(runtime, [SECRET.encode(), b"partner-77"]) == []


def test_strict_rules_dead_letter_the_event_naming_the_field(
    runtime: Runtime,
    leadengine: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib import resources

    text = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
    strict = tmp_path / "strict.yaml"
    strict.write_text(text.replace("unknown_fields: keep", "unknown_fields: reject"))
    monkeypatch.setenv("LEADENGINE_RULES_FILE", str(strict))
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(_events()) + b"\n")
    leadengine("ingest", str(path), "--format", "json")
    code, out = leadengine("deadletters", "list", "--format", "json")
    assert code == 0
    letters = json.loads(out)
    assert len(letters) == 2 and {d["field"] for d in letters} == {"data.utm_term"}
