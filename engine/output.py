"""Render read results as a terminal table, JSON or CSV: one function, every command.

Tables are for people: untrusted text is shown escaped (engine.sanitize), cells wrap to fit
the terminal (COLUMNS, else the terminal's width, else 100 columns) and columns that still do
not fit are left out with a note, unless `--wide`. JSON is exact. CSV is exact but for cells a
spreadsheet would evaluate (neutralised) and booleans (`true`/`false`)."""

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

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.sanitize import csv_cell, terminal_text

FORMATS = ("table", "json", "csv")
DEFAULT_WIDTH = 100
UNLIMITED = 100_000
LONG_WORD = 12

# header underlined with dashes, columns two spaces apart, no frame: plain ASCII to paste
PLAIN = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)

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


def _cell(value: Any) -> str:
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


def _rich_table(
    heads: Sequence[str],
    numeric: Sequence[bool],
    cells: list[list[str]],
    widths: Sequence[int | None],
) -> Table:
    grid = Table(
        box=PLAIN,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style=None,
        highlight=False,
    )
    for head, num, width in zip(heads, numeric, widths, strict=True):
        grid.add_column(
            Text(head), justify="right" if num else "left", overflow="fold", width=width
        )
    for row in cells:
        grid.add_row(*(Text(c) for c in row))  # Text: no markup, no emoji codes
    return grid


def _split_header(name: str, width: int) -> str:
    """A long header on several lines, broken after underscores, each at most `width` (or its
    longest part): `cost_per_customer` over numbers 8 wide reads `cost_per_` / `customer`."""
    parts = [p + "_" for p in name.split("_")]
    parts[-1] = parts[-1][:-1]
    lines = [""]
    for part in parts:
        if lines[-1] and cell_len(lines[-1] + part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _wrapped_width(texts: Sequence[str], width: int) -> int:
    """The widest line of `texts` wrapped at spaces to `width` (longer words fold)."""
    widest = 0
    for text in texts:
        line = -1
        for word in text.split():
            size = min(cell_len(word), width)
            line = size if line < 0 or line + 1 + size > width else line + 1 + size
            widest = max(widest, line)
    return widest


def _widths(columns: list[list[str]], mins: list[int], room: int) -> list[int]:
    """Column widths summing to at most `room`: the widest column gives way first, each down to
    what its text needs once wrapped, never below its minimum."""
    widths = [_wrapped_width(texts, 10**9) for texts in columns]
    while sum(widths) > room:
        order = sorted(range(len(widths)), key=lambda k: -widths[k])
        shrinkable = [k for k in order if widths[k] > mins[k]]
        if not shrinkable:
            break
        i = shrinkable[0]
        others = [widths[k] for k in order if k != i]
        target = max(mins[i], widths[i] - (sum(widths) - room), max(others, default=0) - 1)
        target = min(target, widths[i] - 1)
        widths[i] = max(mins[i], _wrapped_width(columns[i], target))
    return widths


def _min_width(texts: Sequence[str]) -> int:
    """Narrowest a column can be: its longest word, or LONG_WORD if longer (it folds then)."""
    words = [cell_len(w) for t in texts for w in t.split()]
    return min(max(words, default=1), LONG_WORD)


def _layout(
    cols: Sequence[str], cells: list[list[str]], width: int
) -> tuple[list[str], list[int | None]]:
    """Headers and widths of as many leading columns as fit `width` (at least one). A table
    that is too wide first breaks long headers after underscores, then wraps the widest
    columns' text, then leaves out trailing columns."""
    heads = [terminal_text(c) for c in cols]
    data = [[row[i] for row in cells] for i in range(len(cols))]
    natural = [max([cell_len(h), *map(cell_len, d)]) for h, d in zip(heads, data, strict=True)]
    if sum(natural) + 2 * len(cols) - 1 <= width:
        return heads, [None] * len(cols)
    widest = [max(map(cell_len, d), default=0) for d in data]
    heads = [_split_header(h, w) for h, w in zip(heads, widest, strict=True)]
    columns = [[*h.split("\n"), *d] for h, d in zip(heads, data, strict=True)]
    mins = [
        max(_min_width(c), *(cell_len(x) for x in h.split("\n")))
        for c, h in zip(columns, heads, strict=True)
    ]
    keep = 1
    while keep < len(cols) and sum(mins[: keep + 1]) + 2 * (keep + 1) - 1 <= width:
        keep += 1
    widths = _widths(columns[:keep], mins[:keep], width - 2 * keep + 1)
    return heads[:keep], list(widths)


def _console(width: int) -> Console:
    return Console(
        file=io.StringIO(),
        width=width,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> str:
    width = table_width()
    cols = list(columns or (rows[0].keys() if rows else []))
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    numeric = [all(_is_number(r.get(c)) for r in rows) and bool(rows) for c in cols]
    out: list[str] = []
    if title:
        out += [*_wrap(terminal_text(title), width), ""]
    heads, widths = _layout(cols, cells, width)
    keep = len(heads)
    if cols:
        console = _console(width)
        with console.capture() as captured:
            console.print(_rich_table(heads, numeric[:keep], [r[:keep] for r in cells], widths))
        out += [line.rstrip() for line in captured.get().rstrip("\n").split("\n")]
    if not rows:
        out.append("(none)")
    if keep < len(cols):
        hidden = ", ".join(terminal_text(c) for c in cols[keep:])
        out += _wrap(f"({len(cols) - keep} columns not shown: {hidden}; --wide shows all)", width)
    return "\n".join(out)


def prose(text: str) -> str:
    """Free text for the terminal (a summary above tables): escaped like a table's cells and
    each line wrapped to the table width."""
    width = table_width()
    return "\n".join(
        wrapped for line in text.split("\n") for wrapped in _wrap(terminal_text(line), width)
    )


def _wrap(text: str, width: int) -> list[str]:
    if width >= UNLIMITED:
        return [text]
    lines = Text(text).wrap(_console(width), width, overflow="fold")
    return [line.plain.rstrip() for line in lines] or [""]


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
