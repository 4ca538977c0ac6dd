"""SLA per routing round (engine/projections/rounds.py): for any routings and any facts, a lead
has one row per routing, numbered in routing order; each fact counts for at most one round
(the one it falls in); each round's first sales touch and decision are the earliest that
count; its at-risk moments come before its deadlines; and the latest round is `lead_sla`'s row.
Also the windows of attribution_by_window (engine/analytics/windows.py): a month lies in its
quarter, and the months of a year tile it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics import windows
from engine.domain.facts import Fact
from engine.domain.rules import load_rules
from engine.domain.sla import DECISIONS
from engine.projections import rows
from engine.projections.rounds import COLUMNS, round_rows

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SLA = load_rules().sla
assert SLA is not None
REPS = ("ana", "bo")
TYPES = (*SLA.first_touch_types, "touch.page_viewed", *sorted(DECISIONS))
COL = {name: COLUMNS.index(name) for name in COLUMNS}

routings = st.lists(
    st.tuples(st.integers(0, 60 * 24 * 10), st.sampled_from(REPS)), min_size=1, max_size=5
)
facts = st.lists(
    st.tuples(st.integers(0, 60 * 24 * 12), st.sampled_from(TYPES), st.sampled_from(REPS)),
    max_size=12,
)


def _lead(routed: list[tuple[int, str]], made: list[tuple[int, str, str]]) -> Any:
    events = [
        SimpleNamespace(
            occurred_at=START + timedelta(minutes=m),
            owner=rep,
            queue="q",
            strategy="round_robin",
            why="turn",
            trigger_event_id=f"t{i}",
        )
        for i, (m, rep) in enumerate(routed)
    ]
    return SimpleNamespace(
        id=uuid4(),
        key="k",
        routed=events,
        routings=[(e.occurred_at, e.owner, e.queue) for e in events],
        facts=[
            Fact(f"f{i}", t, "s", START + timedelta(minutes=m), {"rep": rep}, seq=i)
            for i, (m, t, rep) in enumerate(made)
        ],
    )


@settings(max_examples=200, deadline=None)
@given(routings, facts, st.booleans())
def test_each_fact_counts_for_the_round_it_falls_in(
    routed: list[tuple[int, str]], made: list[tuple[int, str, str]], owner_only: bool
) -> None:
    sla = SLA.model_copy(update={"owner_only": owner_only})
    lead = _lead(routed, made)
    out = round_rows(lead, sla)
    assert [r[COL["round"]] for r in out] == list(range(1, len(routed) + 1))
    for n, row in enumerate(out):
        start, end = row[COL["routed_at"]], row[COL["ended_at"]]
        assert end == (lead.routed[n + 1].occurred_at if n + 1 < len(out) else None)
        inside = [
            f for f in lead.facts if f.occurred_at >= start and (end is None or f.occurred_at < end)
        ]
        touches = [
            f.occurred_at
            for f in inside
            if f.type in sla.first_touch_types
            and (not owner_only or f.data["rep"] == row[COL["owner"]])
        ]
        decisions = [f.occurred_at for f in inside if f.type in DECISIONS]
        assert row[COL["first_touch_at"]] == (min(touches) if touches else None)
        assert row[COL["decided_at"]] == (min(decisions) if decisions else None)
        assert start < row[COL["first_touch_at_risk"]] <= row[COL["first_touch_due"]]
        assert start < row[COL["decision_at_risk"]] <= row[COL["decision_due"]]
    # the latest round is lead_sla's row, column for column
    latest = rows.sla_row(lead, sla)
    assert latest is not None
    last = out[-1]
    assert latest[2] == last[COL["round"]]
    assert latest[3:] == (
        last[COL["owner"]],
        last[COL["queue"]],
        last[COL["routed_at"]],
        last[COL["first_touch_due"]],
        last[COL["first_touch_at"]],
        last[COL["decision_due"]],
        last[COL["decided_at"]],
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(1990, 2100), st.integers(1, 12))
def test_a_month_lies_in_its_quarter_and_the_months_tile_the_year(year: int, m: int) -> None:
    month, quarter = windows.month(year, m), windows.quarter(year, m)
    assert month.start is not None and month.end is not None
    assert quarter.start is not None and quarter.end is not None
    assert quarter.start <= month.start < month.end <= quarter.end
    assert month.key == f"{year:04d}-{m:02d}" and quarter.key[-1] == str((m - 1) // 3 + 1)
    spans = windows.spans_of([(year, x) for x in range(1, 13)])
    months = sorted((s.start, s.end) for s in spans if s.kind == "month")
    assert all(a[1] == b[0] for a, b in pairwise(months))
    assert months[0][0] == datetime(year, 1, 1, tzinfo=UTC)
    assert months[-1][1] == datetime(year + 1, 1, 1, tzinfo=UTC)
    assert sum(1 for s in spans if s.kind == "quarter") == 4
    assert [s.key for s in spans if s.kind == "all"] == ["all"]
