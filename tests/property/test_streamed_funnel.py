"""`report funnel` with a window or a clock and the attribution windows, now streamed lead by
lead (`funnel.snapshot_of`, `windows.compute_of`), give exactly the in-memory results
(`funnel.snapshot`, `windows.compute` over a Dataset), which stay the reference: for random
journeys (moves with skips and exits, people whose furthest lead stands elsewhere, deals in
several currencies), windows, and rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.analytics import funnel, windows
from engine.analytics.attribution import MODELS
from engine.analytics.journeys import Dataset, Journey, Move, Touchpoint
from engine.domain.rules import load_rules
from tests.property.test_streamed_kpis import _at, _rules, journeys

BOUNDS = st.sampled_from((None, _at(200), _at(900), _at(1500), _at(4000)))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys(), BOUNDS, BOUNDS)
def test_streamed_funnel_equals_the_snapshot(
    js: list[Journey], start: datetime | None, end: datetime | None
) -> None:
    expected = funnel.snapshot(Dataset(js, []), start, end)
    assert funnel.snapshot_of(iter(js), start, end) == expected


def _undated(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows without `computed_at` (the last column: the moment each computation ran)."""
    return [row[:-1] for row in rows]


@st.composite
def window_cases(draw: st.DrawFn) -> dict[str, Any]:
    js = draw(journeys())
    months = {(t.at.year, t.at.month) for j in js for t in j.touches}
    months |= {(m.at.year, m.at.month) for j in js for m in j.moves}
    return {"journeys": js, "rules": _rules(draw), "spans": windows.spans_of(months)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window_cases())
def test_streamed_windows_equal_the_in_memory_windows(case: dict[str, Any]) -> None:
    js, rules, spans = case["journeys"], case["rules"], case["spans"]
    ds = Dataset(js, [])
    expected = [row for span in spans for row in windows.compute(ds, rules, span, 7)]
    got = windows.compute_of(iter(js), rules, spans, 7)
    assert _undated(got) == _undated(expected)


def test_window_rows_keep_the_models_columns() -> None:
    """A window with one conversion: one row per key, credits in every model's column."""
    at = datetime(2026, 1, 5, tzinfo=UTC)
    touch = Touchpoint(at, 1, "touch.page_viewed", "ads")
    j = Journey("a", [touch], [Move(at, "x", "customer", "t")])
    spans = windows.spans_of([(2026, 1)])
    rows = windows.compute_of([j], load_rules(), spans, 3)
    key = {"channel": "ads", "campaign": "(none)"}
    assert [r[:5] for r in rows if r[2] == "conversions"] == [
        (span.key, by, "conversions", "customer", key[by]) for span in spans for by in windows.BYS
    ]
    one = Decimal("1.0000")
    assert all(
        r[8 : 8 + len(MODELS)] == (one,) * len(MODELS) for r in rows if r[2] == "conversions"
    )
