"""A rules file's errors as the CLI prints them: each error apart on the one line (a trial
found two glued together by a space), and no pydantic class names a rules file never shows."""

from __future__ import annotations

from importlib import resources

import pytest

from engine.cli.failures import one_line
from engine.domain.errors import RulesError
from engine.domain.rules import parse_rules


def _error(extra: str) -> str:
    default = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
    text = default.replace("accounts:\n", "accounts:\n" + extra, 1)
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source="r.yaml")
    return one_line(str(caught.value))


def test_two_errors_stay_apart_on_one_line() -> None:
    line = _error("  provisional: {from: name, min_leads: 0}\n")
    first, second = line.split("; ")
    assert first.startswith("r.yaml:") and "provisional.from: Input should be 'domain'" in first
    assert second.startswith("r.yaml:") and "provisional.min_leads:" in second
    assert "\n" not in line


def test_no_model_class_names() -> None:
    line = _error("  provisional: yes\n")
    assert line.endswith("accounts.provisional: Input should be a valid dictionary"), line
    assert "instance of" not in line


def test_one_line_keeps_a_single_message_as_it_was() -> None:
    assert one_line("  lead  x\tnot found ") == "lead x not found"
    assert one_line("a\n\n  b\n") == "a; b"
