"""Render read results as a terminal table, JSON or CSV: one function, every command."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

FORMATS = ("table", "json", "csv")


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
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(_plain(value))


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> str:
    cols = list(columns or (rows[0].keys() if rows else []))
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    numeric = [all(_is_number(r.get(c)) for r in rows) and bool(rows) for c in cols]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [title, ""] if title else []
    out += [line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    if not rows:
        out.append("(none)")
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return value is None or (
        isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
    )


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    cols = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _plain(row.get(c)) for c in cols})
    return buf.getvalue()


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
