"""Errors echo user input bounded (`engine.domain.errors.echoed`): short input whole, as
`repr` shows it; long input by its start and its length, never its end."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.errors import ECHO_LIMIT, LeadNotFound, echoed


@given(st.text(max_size=3 * ECHO_LIMIT))
def test_echoed_input_is_bounded_and_says_how_long_it_was(text: str) -> None:
    shown = echoed(text)
    if len(text) <= ECHO_LIMIT:
        assert shown == repr(text)
    else:
        assert shown == f"{text[:ECHO_LIMIT]!r}... ({len(text):,} characters)"
        assert len(shown) <= len(repr(text[:ECHO_LIMIT])) + 30


def test_a_lead_not_found_names_a_long_key_by_its_start() -> None:
    message = str(LeadNotFound("k" * 5000 + "END"))
    assert "END" not in message and "(5,003 characters)" in message and len(message) < 150
