"""A lead key of only spaces is refused at the door, with the field and what was expected."""

from __future__ import annotations

import json

import pytest

from engine.domain.contract import parse_event
from engine.domain.errors import InvalidEvent


@pytest.mark.parametrize("key", [" ", "   ", "\t", " \u3000 "])
def test_a_blank_key_is_rejected_naming_the_field(key: str) -> None:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "t",
        "type": "touch.page_viewed",
        "subject": key,
        "time": "2026-03-01T09:00:00Z",
        "data": {"channel": "web"},
    }
    with pytest.raises(InvalidEvent) as info:
        parse_event(json.dumps(event).encode())
    assert info.value.field == "subject" and "spaces" in (info.value.expected or "")
    event["subject"] = f" k{key}"  # spaces around a real key are the key's own business
    assert parse_event(json.dumps(event).encode()).subject == f" k{key}"
