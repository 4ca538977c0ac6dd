"""parse_event over every input: it returns an Envelope inside the documented bounds or raises
InvalidEvent (with text that can itself be stored and sent), and nothing else, ever."""

from __future__ import annotations

import json
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain import limits
from engine.domain.contract import Envelope, parse_event
from engine.domain.errors import InvalidEvent
from tests.property.strategies import encode, mutated_event, valid_event

FAST = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COUNTS = ("employees", "capacity", "duration_seconds", "schema_version")


def _safe(text: str | None) -> bool:
    return text is None or not any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def _strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (k, *_strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def outcome(raw: bytes) -> Envelope | InvalidEvent:
    """parse_event's answer; any other exception fails the property."""
    try:
        return parse_event(raw)
    except InvalidEvent as exc:
        return exc


def assert_within_bounds(env: Envelope) -> None:
    every = _strings(env.model_dump(mode="json"))
    assert all(_safe(s) for s in every)
    assert env.id.strip() and env.subject.strip() and env.source.strip()
    assert env.time.tzinfo is UTC and limits.TIME_MIN <= env.time < limits.TIME_MAX
    data = env.data
    for name in ("amount",):
        if name in data:
            amount = Decimal(str(data[name]))
            assert 0 <= amount < limits.AMOUNT_LIMIT
            assert amount == amount.quantize(Decimal("0.01"))
    for name in COUNTS:
        if name in data:
            assert 0 <= int(data[name]) <= limits.INT_MAX
    for name in ("period_start", "period_end"):
        if name in data:
            assert limits.DATE_MIN <= date.fromisoformat(data[name]) <= limits.DATE_MAX


def assert_storable(err: InvalidEvent) -> None:
    """What a dead letter keeps in text columns and Kafka headers can be stored and encoded."""
    for text in (err.describe(), err.reason, err.event_id, err.event_type, err.field, err.expected):
        assert _safe(text), text
        if text is not None:
            text.encode("utf-8")
    assert err.reason


@FAST
@given(valid_event())
def test_a_record_of_the_published_schema_is_accepted_within_bounds_or_refused(
    event: dict[str, Any],
) -> None:
    result = outcome(encode(event))
    if isinstance(result, InvalidEvent):
        assert_storable(result)
    else:
        assert_within_bounds(result)


@FAST
@given(mutated_event())
def test_a_mutated_record_never_raises_anything_but_invalid_event(
    record: dict[str, Any] | bytes,
) -> None:
    result = outcome(encode(record))
    if isinstance(result, InvalidEvent):
        assert_storable(result)
    else:
        assert_within_bounds(result)


@FAST
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw: bytes) -> None:
    result = outcome(raw)
    assert isinstance(result, InvalidEvent)
    assert_storable(result)


@FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    )
)
def test_arbitrary_json_never_raises_anything_but_invalid_event(doc: Any) -> None:
    result = outcome(json.dumps(doc).encode())
    assert isinstance(result, InvalidEvent)
    assert_storable(result)


@FAST
@given(st.integers(1, 3 * limits.MAX_DEPTH), st.sampled_from(["[", '{"a":']))
def test_nesting_is_refused_exactly_past_the_documented_depth(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    doc = opener * depth + "0" + closer * depth
    result = outcome(doc.encode())
    assert isinstance(result, InvalidEvent)  # never a CloudEvent; but why depends on depth
    assert ("nested deeper" in result.reason) == (depth > limits.MAX_DEPTH)
