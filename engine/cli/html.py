"""`report html`: one self-contained page (inline CSS and SVG, nothing fetched) with the charts
marketing-ops looks at and the numbers behind each one."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any

from engine.analytics.journeys import FUNNEL_STAGES
from engine.cli import svg
from engine.cli.output import cell

CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1150px; color: #111; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2.2rem; }
.meta { color: #555; } table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border-bottom: 1px solid #ddd; padding: .2rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } .chart { display: block; margin: .5rem 0; }
"""

#: Counts the drawn marks so a headless browser (and a reader of the DOM) can tell charts drew.
SCRIPT = """
document.addEventListener("DOMContentLoaded", function () {
  var marks = document.querySelectorAll("svg.chart .mark").length;
  document.body.setAttribute("data-marks", String(marks));
});
"""


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p>(no data)</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _f(value: Any) -> float:
    return float(value) if isinstance(value, (int, float, Decimal)) else 0.0


def _funnel(doc: dict[str, Any]) -> str:
    rows = doc["funnel"]
    bars = [
        (r["stage"], _f(r["reached"]), f"({r['conversion_pct']}%)" if r["conversion_pct"] else "")
        for r in rows
    ]
    conv = [(r["stage"], _f(r["conversion_pct"]), "%") for r in rows[1:]]
    return (
        "<h2>Funnel</h2>"
        + svg.hbars(bars, label="leads reaching each stage")
        + "<h2>Conversion by stage</h2>"
        + svg.hbars(conv, label="conversion from the stage before, percent")
        + _table(rows)
    )


def _attribution(doc: dict[str, Any]) -> str:
    att = doc["attribution"]
    by = att["by"]
    rows = [r for r in att["side_by_side"] if r[by] != "TOTAL"]
    models = list(att["models"])
    series = {m: [_f(r[m]) for r in rows] for m in models}
    return (
        f"<h2>Attribution by model ({escape(str(att['conversions']))} "
        f"{escape(att['conversion'])} conversions, by {escape(by)})</h2>"
        + svg.grouped_hbars([r[by] for r in rows], series, label="credit by model")
        + _table(att["side_by_side"])
    )


def _flow(doc: dict[str, Any]) -> str:
    rows = doc["flow"]
    if not rows:
        return "<h2>Lead flow</h2><p>(no data)</p>"
    period = next(iter(rows[0]))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FUNNEL_STAGES, 0))
    for r in rows:
        for s in FUNNEL_STAGES:
            totals[r[period]][s] += r[s]
    periods = sorted(totals)
    shown = ("lead", "mql", "sql", "customer")
    series = {s: [float(totals[p][s]) for p in periods] for s in shown}
    table = [{period: p, **totals[p]} for p in periods]
    return (
        f"<h2>Lead flow per {escape(period)}</h2>"
        + svg.lines(periods, series, label="stage entries per period")
        + _table(table)
    )


def _costs(doc: dict[str, Any]) -> str:
    rows = doc["money"]
    key = next(iter(rows[0])) if rows else "channel"
    groups = [r for r in rows if r[key] != "TOTAL" and r["cost"]]
    stages = ("cost_per_lead", "cost_per_mql", "cost_per_sql", "cost_per_customer")
    series = {s.removeprefix("cost_per_"): [_f(r[s]) for r in groups] for s in stages}
    left_out = doc.get("money_left_out") or []
    return (
        f"<h2>Cost per stage in {escape(str(doc.get('currency')))} "
        f"(attributed revenue: {escape(doc['money_model'])})</h2>"
        + svg.grouped_hbars([r[key] for r in groups], series, label="cost per stage")
        + _table(rows)
        + ("<p>Left out (no rate into this currency):</p>" + _table(left_out) if left_out else "")
    )


def page(doc: dict[str, Any]) -> str:
    window = ", ".join(
        f"{k} {cell(doc.get(k)) or '-'}" for k in ("from", "to", "as_of", "occurred_by")
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        _funnel(doc),
        "<h2>Sales cycle</h2>" + _table(doc["cycle"]),
        _attribution(doc),
        _flow(doc),
        _costs(doc),
        "<h2>Sales follow-up</h2>" + _table(doc["followup"]) + _table(doc["dials"]),
        "<h2>Email</h2>" + _table(doc["email"]),
        "<h2>Touchpoint clusters</h2>" + _table(doc["clusters"]),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>leadengine report</title>"
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>"
        f"<h1>leadengine: funnel, attribution and cost</h1>"
        f'<p class="meta">{doc["leads"]:,} leads; {escape(window)}; rules {escape(doc["rules"])}; '
        f"generated {generated}</p>" + "".join(parts) + "</body></html>\n"
    )
