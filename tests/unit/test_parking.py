"""What a parked lead records: the reason names the failure, never the row's values or the key."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest

from engine.projections.parking import REASON_LENGTH, Park, describe


def _raise(message: str) -> None:
    raise ValueError(message)


def test_a_python_error_names_its_class_and_where_and_scrubs_the_key() -> None:
    with pytest.raises(ValueError) as caught:
        _raise("bad amount for ada@example.com: 'x'")
    error, reason = describe(caught.value, "ada@example.com")
    assert error == "ValueError"
    assert "ada@example.com" not in reason and "<key>" in reason
    assert reason.startswith("ValueError in test_parking.py:") and "(_raise)" in reason


def test_a_database_error_gives_its_primary_message_and_table_not_the_row() -> None:
    exc = psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    error, reason = describe(exc, None, "lead_touchpoints")
    assert (error, reason) == (
        "DataError",
        "writing lead_touchpoints: PostgreSQL text fields cannot contain NUL (0x00) bytes",
    )


def test_a_long_reason_is_cut_and_nul_bytes_never_reach_the_table() -> None:
    _error, reason = describe(RuntimeError("x" * 1000), None)
    assert len(reason) == REASON_LENGTH and reason.endswith("…")
    row = Park("leads", uuid4(), "crm-\x00-1", 7, "DataError", "bad \x00 value").row()
    assert not any("\x00" in v for v in row if isinstance(v, str))
    assert row[2] == "crm-\\0-1"
