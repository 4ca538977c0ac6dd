"""The KPI views count people, as `report kpis` does (docs/identity.md): on generated journeys
where half the leads arrive under several keys (cookies linked, duplicates merged, some merges
undone), every KPI view still gives the report's numbers, and the views that count would count
more if they counted keys."""

from __future__ import annotations

import pytest

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime
from tests.integration import test_reports
from tests.integration.test_reports import _ingest, _view


@pytest.fixture
def stitched(runtime: Runtime) -> Runtime:
    _ingest(runtime, [validate_event(e) for e in generate(160, seed=21, identity=0.5)])
    return runtime


def test_kpi_views_count_people_as_the_report_does(stitched: Runtime) -> None:
    test_reports.test_views_give_the_report_numbers(stitched)
    with stitched.db.connect() as conn:
        schema = stitched.db.schema
        people = conn.execute(f'SELECT count(*) FROM "{schema}".lead_person').fetchone()
        keys = conn.execute(
            f'SELECT count(*) FROM "{schema}".lead_state WHERE furthest_rank >= 1'
        ).fetchone()
    assert people and people[0] >= 20  # the data has people of several leads
    flow = sum(v["leads"] for v in _view(stitched, "kpi_lead_flow") if v["stage"] == "lead")
    [cycle] = _view(stitched, "kpi_sales_cycle")
    assert keys is not None and flow < keys[0]  # one person of several keys counts once
    assert cycle["customers"] > 0
