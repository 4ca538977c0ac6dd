from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli.commands.schemas import schema_files
from engine.domain import outbound
from engine.domain.contract import EVENT_TYPES, Envelope, parse_event, pii_fields, validate_event
from engine.domain.errors import InvalidEvent
from engine.domain.generator import generate
from tests.factory import line, raw

ROOT = Path(__file__).resolve().parents[2]


def test_valid_event_is_parsed_and_normalised_to_utc() -> None:
    obj = raw("touch.page_viewed", data={"channel": "web", "url": "/pricing"})
    obj["time"] = "2026-03-01T10:00:00+01:00"
    env = parse_event(line(obj))
    assert env.type == "touch.page_viewed"
    assert env.occurred_at.isoformat() == "2026-03-01T09:00:00+00:00"
    assert env.data == {"channel": "web", "url": "/pricing", "schema_version": 1}


@pytest.mark.parametrize(
    ("mutate", "field", "expected_fragment"),
    [
        (lambda o: o.update(type="touch.teleported"), "type", "one of"),
        (lambda o: o.update(time="yesterday"), "time", "RFC 3339"),
        (lambda o: o.update(time="2026-03-01T10:00:00"), "time", "RFC 3339"),
        (lambda o: o["data"].pop("channel"), "data.channel", "required"),
        (lambda o: o.pop("subject"), "subject", "required"),
        (lambda o: o.update(specversion="0.3"), "specversion", "'1.0'"),
        (lambda o: o.update(time=1700000000), "time", "RFC 3339 timestamp string"),
        (lambda o: o.update(time="1700000000"), "time", "RFC 3339 timestamp string"),
        (lambda o: o.update(time="9999-12-31T23:59:59-05:00"), "time", "2100-01-01"),
        (lambda o: o.update(time="1969-12-31T23:59:59Z"), "time", "1970-01-01"),
        (lambda o: o.update(subject=" \t "), "subject", "not blank"),
        (lambda o: o.update(source="  "), "source", "not blank"),
        (lambda o: o["data"].update(channel="a\u0000b"), "data.channel", "without NUL"),
    ],
)
def test_bad_events_name_event_field_and_expectation(mutate, field, expected_fragment) -> None:  # type: ignore[no-untyped-def]
    obj = raw("touch.page_viewed", data={"channel": "web"}, id="e-42")
    mutate(obj)
    with pytest.raises(InvalidEvent) as info:
        parse_event(line(obj))
    err = info.value
    assert err.event_id == "e-42"
    assert err.field == field
    assert expected_fragment in (err.expected or "")
    assert "e-42" in str(err) and field in str(err)


def test_call_outcome_must_be_one_of_the_known_outcomes() -> None:
    obj = raw(
        "touch.call_logged",
        data={"channel": "sales", "direction": "outbound", "outcome": "maybe", "rep": "ana"},
    )
    with pytest.raises(InvalidEvent) as info:
        parse_event(line(obj))
    assert info.value.field == "data.outcome"
    assert "connected" in (info.value.expected or "")


def test_malformed_json_and_non_objects_and_oversize() -> None:
    with pytest.raises(InvalidEvent, match="malformed JSON"):
        parse_event(b'{"id": ')
    with pytest.raises(InvalidEvent, match="JSON object"):
        parse_event(b"[1, 2]")
    with pytest.raises(InvalidEvent, match="too large"):
        parse_event(b" " * 2000, max_bytes=1024)


def test_pii_is_marked_on_the_models() -> None:
    assert pii_fields("lead.captured") == {"email", "name", "phone"}
    assert "notes" in pii_fields("touch.call_logged")
    assert pii_fields("touch.page_viewed") == frozenset()


def test_committed_schemas_match_the_models() -> None:
    files = schema_files()
    committed = {p.name: p.read_text("utf-8") for p in (ROOT / "schemas").glob("*.json")}
    assert set(committed) == set(files), "run: leadengine schemas export schemas/"
    for name, text in files.items():
        assert committed[name] == text, (
            f"schemas/{name} is stale: leadengine schemas export schemas/"
        )
    assert len(files) == len(EVENT_TYPES) + len(outbound.DATA)
    captured = json.loads(files["lead.captured.json"])
    assert captured["properties"]["data"]["properties"]["email"]["x-pii"] is True


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    extra=st.dictionaries(st.sampled_from(["x_note", "x_rank"]), st.integers(), max_size=2),
    unknown=st.sampled_from(["keep", "reject"]),
)
def test_a_parsed_event_is_the_envelope_of_its_validated_data(
    seed: int, extra: dict[str, int], unknown: Literal["keep", "reject"]
) -> None:
    """The envelope's data replaced in place (not a copy of the model) leaves exactly the
    model the envelope validated with its cleaned data would be: fields, the fields set,
    extension attributes, and what is kept aside."""
    for obj in generate(2, seed)[:12]:
        obj = {**obj, "data": {**obj["data"], **(extra if unknown == "keep" else {})}}
        env = validate_event(obj, unknown_fields=unknown)
        model = EVENT_TYPES[env.type]
        known = {k: v for k, v in obj["data"].items() if k in model.model_fields}
        clean = model.model_validate(known).model_dump(mode="json", exclude_none=True)
        expected = Envelope.model_validate({**obj, "data": clean})
        assert env.__dict__ == expected.__dict__  # every field, as validated
        assert env.model_fields_set == expected.model_fields_set
        assert env.model_extra == expected.model_extra
        assert env.kept == ({"data": extra} if extra and unknown == "keep" else {})
