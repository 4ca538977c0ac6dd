"""The size limit is inclusive: a record of exactly `max_bytes` is read, one byte more is
refused with the size in the message (found by bench/db_mutants.py: `>=` for `>` passed every
contract test)."""

from __future__ import annotations

import pytest

from engine.domain.contract import parse_event
from engine.domain.errors import InvalidEvent
from tests.factory import line, raw


def test_a_record_of_exactly_max_bytes_is_read_and_one_more_byte_is_refused() -> None:
    record = line(raw("lead.captured", "k-size", {"email": "size@acme.example"}))
    assert parse_event(record, max_bytes=len(record)).subject == "k-size"
    with pytest.raises(InvalidEvent) as refused:
        parse_event(record, max_bytes=len(record) - 1)
    assert f"payload too large ({len(record)} bytes)" in refused.value.describe()
    assert f"at most {len(record) - 1} bytes" in refused.value.describe()
