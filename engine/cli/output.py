"""Render read results as a terminal table, JSON or CSV: one function, every command.

Tables are for people: untrusted text is shown escaped (engine.sanitize), cells wrap to fit
the terminal (COLUMNS, else the terminal's width, else 100 columns) and columns that still do
not fit are left out with a note, unless `--wide` (engine.tables lays them out). JSON is
exact. CSV is exact but for cells a spreadsheet would evaluate (neutralised) and booleans
(`true`/`false`)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from engine import tables
from engine.sanitize import csv_cell, terminal_text

FORMATS = ("table", "json", "csv")
DEFAULT_WIDTH = 100
UNLIMITED = 100_000

_wide = False


def configure(*, wide: bool = False) -> None:
    """`--wide`: tables show every column at full width (no wrapping, nothing left out)."""
    global _wide
    _wide = wide


def table_width() -> int:
    """The width tables fit: COLUMNS, else the terminal's, else 100; unlimited with --wide."""
    if _wide:
        return UNLIMITED
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns or DEFAULT_WIDTH


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(obj: Any) -> str:
    return json.dumps(_plain(obj), indent=2, sort_keys=False, ensure_ascii=False)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return terminal_text(str(_plain(value)))


def _is_number(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    )


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> str:
    width = table_width()
    cols = list(columns or (rows[0].keys() if rows else []))
    cells = [[cell(r.get(c)) for c in cols] for r in rows]
    numeric = [all(_is_number(r.get(c)) for r in rows) and bool(rows) for c in cols]
    out: list[str] = []
    if title:
        out += [*_wrap(terminal_text(title), width), ""]
    grid = tables.layout([terminal_text(c) for c in cols], cells, width)
    out += tables.draw(grid, numeric, [r[: grid.shown] for r in cells])
    if not rows:
        out.append("(none)")
    if grid.shown < len(cols):
        hidden = ", ".join(terminal_text(c) for c in cols[grid.shown :])
        note = f"({len(cols) - grid.shown} columns not shown: {hidden}; --wide shows all)"
        out += _wrap(note, width)
    return "\n".join(out)


def prose(text: str) -> str:
    """Free text for the terminal (a summary above tables): escaped like a table's cells and
    each line wrapped to the table width."""
    width = table_width()
    return "\n".join(
        wrapped for line in text.split("\n") for wrapped in _wrap(terminal_text(line), width)
    )


def _wrap(text: str, width: int) -> list[str]:
    return [text] if width >= UNLIMITED else tables.wrap(text, width)


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = list(columns or (rows[0].keys() if rows else []))
    lines = [_csv_line([csv_cell(c) for c in cols])]
    lines += [_csv_line([_plain(csv_cell(row.get(c))) for c in cols]) for row in rows]
    return "".join(lines)


def _csv_line(values: list[Any]) -> str:
    """One CSV record ending in LF. Written with CRLF, then cut: the csv module quotes a field
    holding a CR only when CR is part of the line terminator."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue()[:-2] + "\n"


def render(
    fmt: str,
    rows: Sequence[dict[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    document: Any = None,
) -> str:
    """`document` (default: the rows) is what JSON output carries."""
    if fmt == "json":
        return to_json(rows if document is None else document)
    if fmt == "csv":
        return to_csv(rows, columns)
    return table(rows, columns, title)
