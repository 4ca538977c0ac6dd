"""Lay out a plain-text table in a given width: wrap the widest columns' text, break long
headers after underscores, and leave out trailing columns that still do not fit.

Cells arrive already escaped (engine.sanitize), so none holds a newline or a control
character. Widths are display cells (rich.cells: a CJK character takes two). Drawn here
rather than with rich's Table, which takes about 1.5 ms a row: 8 s for a lead history of
5,000 events, where this takes well under a second."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len, chop_cells

GAP = 2  # spaces between columns
WORD = 24  # columns wrap at spaces down to their longest word, up to this long...
LONG_WORD = 12  # ...then, if still too wide, fold words longer than this


@dataclass(frozen=True, slots=True)
class Layout:
    heads: list[str]  # headers, "\n" where one was broken
    widths: list[int]

    @property
    def shown(self) -> int:
        return len(self.widths)


def layout(cols: Sequence[str], cells: Sequence[Sequence[str]], width: int) -> Layout:
    """Headers and widths of as many leading columns as fit `width` (at least one)."""
    heads = list(cols)
    data = [[row[i] for row in cells] for i in range(len(cols))]
    natural = [max([cell_len(h), *map(cell_len, d)]) for h, d in zip(heads, data, strict=True)]
    if sum(natural) + GAP * (len(cols) - 1) <= width:
        return Layout(heads, natural)
    widest = [max(map(cell_len, d), default=0) for d in data]
    heads = [_split_header(h, w) for h, w in zip(heads, widest, strict=True)]
    columns = [[*h.split("\n"), *d] for h, d in zip(heads, data, strict=True)]
    mins = [_min_width(c, LONG_WORD) for c in columns]
    keep = 1
    while keep < len(cols) and sum(mins[: keep + 1]) + GAP * keep <= width:
        keep += 1
    room = width - GAP * (keep - 1)
    words = [_wrapped_width(c, 10**9) for c in columns[:keep]]
    words = _shrink(columns[:keep], words, [_min_width(c, WORD) for c in columns[:keep]], room)
    widths = _shrink(columns[:keep], words, mins[:keep], room)
    return Layout(heads[:keep], [min(w, width) for w in widths])


def draw(grid: Layout, numeric: Sequence[bool], cells: Sequence[Sequence[str]]) -> list[str]:
    """The header, a rule of dashes, and each row, its cells wrapped to their widths."""
    heads = [wrap(h, w) for h, w in zip(grid.heads, grid.widths, strict=True)]
    tall = max((len(h) for h in heads), default=1)
    heads = [[""] * (tall - len(h)) + h for h in heads]  # headers sit on the rule
    out = _block(heads, grid.widths, numeric)
    out.append((" " * GAP).join("-" * w for w in grid.widths).rstrip())
    for row in cells:
        wrapped = [wrap(c, w) for c, w in zip(row, grid.widths, strict=False)]
        out += _block(wrapped, grid.widths, numeric)
    return out


def _block(columns: list[list[str]], widths: Sequence[int], numeric: Sequence[bool]) -> list[str]:
    lines = []
    for k in range(max((len(c) for c in columns), default=0)):
        parts = []
        for lines_of, width, num in zip(columns, widths, numeric, strict=False):
            text = lines_of[k] if k < len(lines_of) else ""
            pad = " " * (width - cell_len(text))
            parts.append(pad + text if num else text + pad)
        lines.append((" " * GAP).join(parts).rstrip())
    return lines


def wrap(text: str, width: int) -> list[str]:
    """`text` wrapped at spaces to `width` cells; a longer word folds (runs of spaces in a
    wrapped cell read as one)."""
    if "\n" not in text and cell_len(text) <= width:
        return [text]
    out: list[str] = []
    for part in text.split("\n"):
        line, size = "", 0
        for word in part.split():
            length = cell_len(word)
            if length > width:
                pieces = chop_cells(word, width)
                if line:
                    out.append(line)
                out += pieces[:-1]
                line, size = pieces[-1], cell_len(pieces[-1])
            elif line and size + 1 + length > width:
                out.append(line)
                line, size = word, length
            else:
                line, size = (f"{line} {word}", size + 1 + length) if line else (word, length)
        out.append(line)
    return out


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


def _shrink(columns: list[list[str]], widths: list[int], mins: list[int], room: int) -> list[int]:
    """Column widths summing to at most `room` if the minimums allow: the widest column gives
    way first, each down to what its text needs once wrapped, never below its minimum."""
    widths = list(widths)
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


def _min_width(texts: Sequence[str], cap: int) -> int:
    """Narrowest a column can be: its longest word, or `cap` if longer (it folds then)."""
    words = [cell_len(w) for t in texts for w in t.split()]
    return max(1, min(max(words, default=1), cap))
