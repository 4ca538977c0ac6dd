"""Inline SVG charts: no scripts, no fonts, no network; a browser draws them as they are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c",
    "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d",
)  # fmt: skip
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _num(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:,.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{int(v):,}"


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" '
        f"{FONT}>" + "".join(body) + "</svg>"
    )


def hbars(rows: Sequence[tuple[str, float, str]], *, label: str, width: int = 720) -> str:
    """One horizontal bar per row: (label, value, note shown after the value)."""
    bar_h, gap, left = 22, 8, 150
    height = max(1, len(rows)) * (bar_h + gap) + gap
    top = max((v for _, v, _ in rows), default=0) or 1
    body = []
    for i, (name, value, note) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = max(0.0, (width - left - 170) * value / top)
        color = PALETTE[i % len(PALETTE)]
        body.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(name)}</text>'
            f'<rect class="mark" x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{color}">'
            f"<title>{escape(name)}: {_num(value)}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 15}">{_num(value)} {escape(note)}</text>'
        )
    return _svg(width, height, body, label)


def grouped_hbars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    width: int = 820,
) -> str:
    """For each category, one thin bar per series (e.g. channels x attribution models)."""
    names = list(series)
    bar_h, group_gap, left = 9, 14, 150
    group_h = bar_h * len(names) + group_gap
    legend_h = 22 * ((len(names) + 3) // 4)
    height = legend_h + max(1, len(categories)) * group_h + 10
    values = [v for vs in series.values() for v in vs]
    top = max((abs(v) for v in values), default=0) or 1
    span = width - left - 80
    body = []
    for i, name in enumerate(names):
        x, y = 10 + (i % 4) * 200, 6 + (i // 4) * 22
        body.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{x + 18}" y="{y + 11}">{escape(name)}</text>'
        )
    for c, category in enumerate(categories):
        y0 = legend_h + c * group_h
        body.append(
            f'<text x="{left - 8}" y="{y0 + bar_h * len(names) / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(category)}</text>'
        )
        for i, name in enumerate(names):
            value = series[name][c]
            w = span * abs(value) / top
            body.append(
                f'<rect class="mark" x="{left}" y="{y0 + i * bar_h}" width="{w:.1f}" '
                f'height="{bar_h - 1}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{escape(category)} / {escape(name)}: {_num(value)}</title></rect>"
            )
    return _svg(width, height, body, label)


def lines(x_labels: Sequence[str], series: Mapping[str, Sequence[float]], *, label: str) -> str:
    """One line per series over ordered x labels (periods)."""
    width, height, left, bottom, top_pad = 860, 300, 50, 40, 30
    n = max(1, len(x_labels))
    top = max((v for vs in series.values() for v in vs), default=0) or 1
    plot_w, plot_h = width - left - 60, height - bottom - top_pad

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)
        return x, top_pad + plot_h * (1 - v / top)

    body = [
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" '
        'stroke="#999"/>',
        f'<text x="{left - 6}" y="{top_pad + 4}" text-anchor="end">{_num(top)}</text>',
        f'<text x="{left - 6}" y="{top_pad + plot_h}" text-anchor="end">0</text>',
    ]
    step = max(1, n // 10)
    for i in range(0, len(x_labels), step):
        x, _ = xy(i, 0)
        body.append(
            f'<text x="{x:.1f}" y="{height - 18}" text-anchor="middle">{escape(x_labels[i])}</text>'
        )
    for s, (name, values) in enumerate(series.items()):
        color = PALETTE[s % len(PALETTE)]
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
        body.append(
            f'<polyline class="mark" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{points}"><title>{escape(name)}</title></polyline>'
            f'<rect x="{left + 10 + s * 120}" y="6" width="12" height="12" fill="{color}"/>'
            f'<text x="{left + 28 + s * 120}" y="17">{escape(name)}</text>'
        )
    return _svg(width, height, body, label)
