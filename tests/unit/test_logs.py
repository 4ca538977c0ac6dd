"""Console logs are as safe for a terminal as tables: upstream text cannot drive it."""

from __future__ import annotations

import json

import pytest

from engine.logs import configure_logging, get_logger

HOSTILE = "k\x1b]0;owned\x07\u202eevil\nnext"


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_hostile_value_in_a_log_line_reaches_the_terminal_inert(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt)
    try:
        get_logger("test").warning("record refused", event_id=HOSTILE)
        err = capsys.readouterr().err
    finally:
        configure_logging("console")
    assert "\x1b" not in err and "\u202e" not in err and "\x07" not in err
    assert err.count("\n") == 1  # one line: an embedded newline cannot forge a second entry
    if fmt == "json":
        assert json.loads(err)["event_id"] == HOSTILE  # exact for machines
    else:
        assert "\\x1b" in err and "\\u202e" in err
