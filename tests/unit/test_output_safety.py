"""What reaches a terminal or a spreadsheet is inert: tables escape control, format and bidi
characters and fit the width; CSV neutralises formulas; JSON stays exact."""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from engine.cli import output
from engine.cli.output import prose, render, table, to_csv, to_json
from engine.sanitize import FORMULA_START, csv_cell, terminal_text

UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}
BAD = "\x1b]0;pwned\x07\x1b[2J\u202eevil\u2066\x9b\x7f\r\n\t\u200b\ufeff\u2028"
FAST = settings(max_examples=150, deadline=None)


def _unsafe(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in UNSAFE]


@pytest.fixture(autouse=True)
def columns_100(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    output.configure(wide=False)


def test_escapes_are_readable() -> None:
    assert terminal_text("a\x1b[31mb") == "a\\x1b[31mb"
    assert terminal_text("x\ny\tz\r") == "x\\ny\\tz\\r"
    assert terminal_text("abc\u202edef") == "abc\\u202edef"
    assert terminal_text("\x85\x9b\x7f") == "\\x85\\x9b\\x7f"
    assert terminal_text("\U000e0041") == "\\U000e0041"  # a tag character
    assert terminal_text("plain caf\u00e9 \u4e2d\u6587") == "plain caf\u00e9 \u4e2d\u6587"


@FAST
@given(st.text())
def test_terminal_text_never_holds_a_control_or_format_character(text: str) -> None:
    assert _unsafe(terminal_text(text)) == []


@FAST
@given(
    st.lists(
        st.dictionaries(st.text(max_size=30), st.text(max_size=200), min_size=1, max_size=6),
        min_size=1,
        max_size=6,
    ),
    st.text(max_size=200),
)
def test_a_rendered_table_holds_no_control_character_and_fits_100_columns(
    rows: list[dict[str, str]], title: str
) -> None:
    text = table(rows, title=title)
    for line in text.split("\n"):
        assert _unsafe(line) == [], line
        assert cell_len(line) <= 100, line


def test_an_escape_sequence_in_a_key_and_a_field_is_shown_escaped() -> None:
    text = table([{"key": "crm-1" + BAD, "detail": BAD}], title="Lead crm-1" + BAD)
    assert "\x1b" not in text and "\u202e" not in text
    assert "crm-1\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil" in text.replace("\n", "")
    assert text.count("\n") == len(text.split("\n")) - 1  # no line but the table's own


def test_the_widest_table_fits_by_wrapping_and_names_what_it_leaves_out() -> None:
    rows = [{f"column_number_{i}": i * 1_000_000 for i in range(30)}]
    text = table(rows)
    assert max(cell_len(line) for line in text.split("\n")) <= 100
    assert "columns not shown" in text and "column_number_29" in text and "--wide" in text
    history = [{"event": "touch.page_viewed", "detail": "word " * 200, "stage": "lead"}]
    wrapped = table(history)
    assert max(cell_len(line) for line in wrapped.split("\n")) <= 100
    assert "stage" in wrapped and "not shown" not in wrapped  # wrapped, nothing left out


def test_wide_shows_every_column_on_one_line() -> None:
    rows = [{f"column_number_{i}": i for i in range(30)}, {"column_number_0": "word " * 40}]
    output.configure(wide=True)
    try:
        text = table(rows)
    finally:
        output.configure(wide=False)
    lines = text.split("\n")
    assert len(lines) == 4 and "column_number_29" in lines[0] and "not shown" not in text


@FAST
@given(st.text())
def test_csv_cell_starting_with_a_formula_character_is_prefixed(text: str) -> None:
    parsed = list(csv.reader(io.StringIO(to_csv([{"c": text}], ["c"])), strict=True))
    value = parsed[1][0] if len(parsed) > 1 else ""
    if text.startswith(FORMULA_START):
        assert value == "'" + text
    else:
        assert value == text
    assert not value.startswith(FORMULA_START)


@pytest.mark.parametrize("formula", ["=1+1", "+1", "-1+cmd", "@SUM(A1)", "\tx", "\rx", "=cmd|x"])
def test_owasp_formula_characters_are_neutralised_in_cells_and_headers(formula: str) -> None:
    text = to_csv([{formula: formula, "n": -5}], [formula, "n"])
    head, row = list(csv.reader(io.StringIO(text)))
    assert head == ["'" + formula, "n"] and row == ["'" + formula, "-5"]


def test_numbers_stay_numbers_and_booleans_are_lowercase() -> None:
    rows: list[dict[str, Any]] = [
        {"n": -5, "f": -2.5, "money": Decimal("-12.30"), "ok": True, "no": False, "x": None}
    ]
    assert to_csv(rows).splitlines()[1] == "-5,-2.5,-12.30,true,false,"
    assert csv_cell(-5) == -5 and csv_cell(Decimal("-1")) == Decimal("-1")
    assert table(rows).splitlines()[2].split()[-2:] == ["true", "false"]


def test_json_output_is_exact() -> None:
    rows = [{"key": BAD, "ok": True, "money": Decimal("0.00")}]
    assert json.loads(render("json", rows)) == [{"key": BAD, "ok": True, "money": "0.00"}]
    assert "\x1b" not in to_json(rows)  # the encoder escapes it: \u001b


@FAST
@given(
    st.integers(min_value=20, max_value=200),
    st.lists(
        st.dictionaries(
            st.text(max_size=20),
            st.one_of(st.text(max_size=120), st.integers(), st.decimals(allow_nan=False)),
            min_size=1,
            max_size=12,
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_tables_fit_any_terminal_width(width: int, rows: list[dict[str, Any]]) -> None:
    with patch.dict(os.environ, {"COLUMNS": str(width)}):
        text = table(rows, title="t")
    assert max(cell_len(line) for line in text.split("\n")) <= width


def test_long_headers_break_after_underscores_and_prose_wraps() -> None:
    rows = [{f"cost_per_thing_{i}": Decimal("1234.50") for i in range(12)}]
    head = table(rows).split("\n")
    assert head[0].split()[0] == "cost_" and "per_" in head[1]
    assert all(cell_len(line) <= 100 for line in head)
    text = prose("first line\x1b[2J\n" + "word " * 50)
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert all(cell_len(line) <= 100 for line in text.split("\n"))
