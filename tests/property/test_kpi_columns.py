"""What `report kpis` and `report funnel` compute from a person's columns (engine/analytics/
kpilead.py, the shape `kpiread` streams from PostgreSQL) is what they computed from its
journey: the first moment each stage was reached (`Journey.reached_at`), and where a person of
several leads stands (`load.by_person`'s `stage_now`), for random moves, ties in time between
leads included. (The KPI document itself: tests/property/test_streamed_kpis.py, whose
`kpis_of` now goes through the columns.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics.journeys import Journey, Move
from engine.analytics.kpilead import first_reached, furthest, kpi_lead
from engine.analytics.load import by_person
from engine.domain.lifecycle import STAGES
from tests.property.test_streamed_kpis import _at, journeys

#: one lead of a person: (the first table `load.stream` meets it in, its moves as (hours,
#: stage)); few moments, so that moves of two leads often tie
LEADS = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.lists(st.tuples(st.integers(0, 4).map(lambda k: k * 50), st.sampled_from(STAGES))),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(journeys())
def test_first_reached_is_reached_at(js: list[Journey]) -> None:
    for j in js:
        x = kpi_lead(j, "channel", ())
        expected = {s: at for s in STAGES if (at := j.reached_at(s)) is not None}
        assert first_reached(x.move_at, x.move_to) == expected


@settings(max_examples=300, deadline=None)
@given(LEADS)
def test_furthest_is_the_stage_now_of_by_person(leads: list[tuple[int, list[Any]]]) -> None:
    """The leads as `load.stream` merges them (met table by table, each table's in key
    order; each lead's moves by time then version) against the arrays `kpiread` sends (all
    the person's moves by time, lead, version)."""
    order = sorted((rank, f"k{i}") for i, (rank, _) in enumerate(leads))
    moves = {f"k{i}": m for i, (_, m) in enumerate(leads)}
    journeys: dict[str, Journey] = {}
    rows: list[tuple[datetime, int, str, int, str]] = []
    for rank, key in order:
        j = journeys[key] = Journey(key)
        for version, (hours, to) in enumerate(moves[key], 1):
            j.moves.append(Move(_at(hours), "", to, "test"))
            rows.append((_at(hours), rank, key, version, to))
        j.moves.sort(key=lambda m: m.at)  # as `load` reads them: by version, then `sort`
    rows.sort()
    expected = by_person(journeys, dict.fromkeys(journeys, "p"))["p"].stage_now
    got = furthest([r[0] for r in rows], [r[4] for r in rows], [r[1] for r in rows],
                   [r[2] for r in rows])  # fmt: skip
    assert got == expected
