"""Which dead letters `forget` purges: a record holding the person's value as a whole token
(any case, any escaping), never one where the value is only part of another word or address."""

from __future__ import annotations

from engine.postgres.deadletters import _mentions, _needles

NEEDLES = _needles(["ann@acme.com", "Ann Lee", "+44 20 7946 0000", "  "])


def test_a_value_as_a_whole_token_is_found_in_any_case_or_escaping() -> None:
    assert _mentions(b'{"data": {"email": "ANN@acme.com"}}', NEEDLES)
    assert _mentions(b'{"data": {"email": "ann\\u0040acme.com"}}', NEEDLES)
    assert _mentions(b'{"note": "call Ann Lee today"}', NEEDLES)
    assert _mentions(b'{"ann@acme.com": 1}', NEEDLES)  # object keys too
    assert _mentions(b"not json: <ann@acme.com>", NEEDLES)


def test_a_value_inside_another_word_or_address_is_not_the_person() -> None:
    assert not _mentions(b'{"data": {"email": "joann@acme.com"}}', NEEDLES)
    assert not _mentions(b'{"data": {"email": "ann@acme.com.au"}}', NEEDLES)
    assert not _mentions(b'{"note": "Ann Leeds"}', NEEDLES)
    assert not _mentions(b'{"phone": "+44 20 7946 00001"}', NEEDLES)
    assert len(NEEDLES) == 3  # a blank value matches nothing (it is left out)
