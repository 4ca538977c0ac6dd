"""Keep mode over every input: a record of the published schema plus any unknown `data` fields
within the contract's bounds reads exactly as strict mode reads the record without them."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.contract import EVENT_TYPES, Envelope, parse_event
from engine.domain.errors import InvalidEvent
from tests.property.strategies import JSON_VALUES, valid_event

FAST = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: names and strings within the limits: no U+0000, no lone surrogate
NAMES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)


def _no_nul(value: Any) -> bool:
    if isinstance(value, str):
        return not any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return all(_no_nul(k) and _no_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_nul(v) for v in value)
    return True


EXTRAS = st.dictionaries(NAMES, JSON_VALUES.filter(_no_nul), min_size=1, max_size=4)


def _read(obj: dict[str, Any], mode: str) -> Envelope | tuple[str | None, str]:
    try:
        return parse_event(json.dumps(obj).encode(), unknown_fields=mode)  # type: ignore[arg-type]
    except InvalidEvent as exc:
        return exc.field, exc.reason


@FAST
@given(valid_event(), EXTRAS)
def test_keep_mode_reads_the_known_part_as_strict_mode_does(
    event: dict[str, Any], extras: dict[str, Any]
) -> None:
    known = EVENT_TYPES[event["type"]].model_fields
    unknown = {k: v for k, v in extras.items() if k not in known}
    widened = copy.deepcopy(event)
    widened["data"] = {**event["data"], **unknown}
    strict = _read(event, "reject")
    kept = _read(widened, "keep")
    if not isinstance(strict, Envelope):
        assert kept == strict  # the same refusal: the unknown fields changed nothing
        return
    assert isinstance(kept, Envelope)
    assert kept.model_dump() == strict.model_dump()
    assert kept.kept.get("data", {}) == json.loads(json.dumps(unknown))
    attributes = {k: v for k, v in event.items() if k not in Envelope.model_fields}
    assert kept.kept.get("attributes", {}) == json.loads(json.dumps(attributes))
    assert kept.unknown_count == len(unknown) + len(attributes)
    if unknown:
        refused = _read(widened, "reject")
        assert isinstance(refused, tuple) and refused[0] is not None
        assert refused[0].removeprefix("data.") in unknown
