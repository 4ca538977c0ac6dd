"""`parse_event`'s fast paths (a raw-text bound instead of blanking strings for the shape check;
one text scan instead of walking every string) decide exactly as the full checks do: the same
envelope, or the same error, for valid, mutated and hostile records."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain import limits
from engine.domain.contract import parse_event, validate_event
from engine.domain.errors import InvalidEvent
from tests.property.strategies import encode, mutated_event, valid_event


def _full_shape(text: str) -> None:
    """`limits.check_shape` without its fast path: strings blanked, then scanned."""
    bare = limits._STRING.sub('""', text)
    long_number = limits._NUMBER_RUN.search(bare)
    if long_number:
        raise InvalidEvent(
            f"number literal of {len(long_number.group(0))} characters",
            expected=f"numbers of at most {limits.MAX_NUMBER_CHARS} characters",
        )
    depth = 0
    for match in limits._BRACKET.finditer(bare):
        depth += 1 if match.group(0) in "[{" else -1
        if depth > limits.MAX_DEPTH:
            raise InvalidEvent(
                f"JSON nested deeper than {limits.MAX_DEPTH} levels",
                expected=f"at most {limits.MAX_DEPTH} levels of arrays and objects",
            )


def _full_parse(raw: bytes) -> Any:
    """What `parse_event` decided before its fast paths: every check in full."""
    text = limits.decode_text(raw)
    _full_shape(text)
    try:
        obj = limits.loads(text)
    except ValueError as exc:
        raise InvalidEvent(f"malformed JSON ({exc})", expected="one JSON object") from None
    return validate_event(obj)  # check_strings walks every string


def _outcome(parse: Any, raw: bytes) -> Any:
    try:
        env = parse(raw)
    except InvalidEvent as exc:
        return ("invalid", exc.describe())
    return ("ok", env.model_dump(mode="json"), env.kept)


HOSTILE = st.sampled_from(
    ["\x00", "\ud800", "\\u0000", "\\ud83d", "\\ud83d\\ude00", "\\\\u0000", "\\n", "é", "😀"]
)


@st.composite
def hostile_text(draw: st.DrawFn) -> bytes:
    """A valid event's JSON with a hostile piece spliced into one of its strings, or its
    nesting and numbers pushed near the limits (as raw text, so escapes stay escapes)."""
    event = draw(valid_event())
    text = json.dumps(event)
    choice = draw(st.integers(0, 3))
    if choice == 0:  # into a string value
        at = text.index('"subject": "') + len('"subject": "')
        text = text[:at] + draw(HOSTILE) + text[at:]
    elif choice == 1:  # a nested extension attribute
        depth = draw(st.integers(limits.MAX_DEPTH - 3, limits.MAX_DEPTH + 2))
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif choice == 2:  # a long number
        digits = draw(st.integers(limits.MAX_NUMBER_CHARS - 2, limits.MAX_NUMBER_CHARS + 2))
        text = text[:-1] + ', "n": 1' + "0" * digits + "}"
    else:  # brackets and digits inside strings only
        depth = draw(st.integers(0, limits.MAX_DEPTH + 5))
        text = text[:-1] + ', "s": "' + "[{" * depth + "9" * 50 + '"}'
    return text.encode("utf-8", "surrogatepass")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(record=st.one_of(valid_event(), mutated_event(), hostile_text()))
def test_fast_parse_decides_as_the_full_checks(record: dict[str, Any] | bytes) -> None:
    raw = encode(record)
    assert _outcome(parse_event, raw) == _outcome(_full_parse, raw)
