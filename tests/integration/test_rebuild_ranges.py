"""A bulk load read range of ids by range (engine/projections/projector.py `CHUNK_EVENTS`: its
memory is one range's aggregates) gives the rows incremental projection gives, in one process
and split over two, for every projection; and the ranges cover every id exactly once."""

from __future__ import annotations

import itertools
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from engine.projections.projector import PROJECTIONS, id_ranges
from engine.projections.rebuild import rebuild
from engine.runtime import Runtime
from tests.integration.test_rebuild import ingest, table_rows


@given(st.integers(1, 64), st.lists(st.integers(0, 2**128 - 1), max_size=50))
def test_the_ranges_cover_every_id_once_in_order(count: int, ids: list[int]) -> None:
    ranges = id_ranges(count)
    assert len(ranges) == count
    assert ranges[0][0] is None and ranges[-1][1] is None
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert hi == lo and hi is not None
    for value in [*ids, 0, 2**128 - 1]:
        u = UUID(int=value)
        inside = [
            (lo, hi) for lo, hi in ranges if (lo is None or lo <= u) and (hi is None or u < hi)
        ]
        assert len(inside) == 1


def test_a_rebuild_range_by_range_gives_the_same_rows(runtime: Runtime) -> None:
    ingest(runtime, 80, seed=33)
    runtime.projector.run()
    head = runtime.projector.position()
    for name, tables in PROJECTIONS.items():
        before = {t: table_rows(runtime, t) for t in tables}
        for workers in (1, 2):  # ~7 ranges per process: every lead's events in one of them
            report = rebuild(runtime.app, runtime.db, name, workers=workers, chunk_events=head // 7)
            assert report.rows == {t: len(before[t]) for t in tables}
            assert {t: table_rows(runtime, t) for t in tables} == before, (name, workers)
    assert sum(len(table_rows(runtime, t)) for t in PROJECTIONS["leads"]) > 0
