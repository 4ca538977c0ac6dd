"""Reports on a real PostgreSQL: views equal the report, credits add up on generated data,
and `as_of` gives back exactly what a report printed at that moment."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from engine.analytics import report, saved
from engine.analytics.attribution import MODELS, NO_TOUCH
from engine.analytics.load import load
from engine.analytics.paths import build_paths
from engine.analytics.report import Window
from engine.cli.output import to_json
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime
from tests.integration.test_projections import rows


def _ingest(runtime: Runtime, events: list[Any]) -> None:
    runtime.app.ingest(events)
    runtime.projector.run()


@pytest.fixture
def loaded(runtime: Runtime) -> Runtime:
    _ingest(runtime, [validate_event(e) for e in generate(160, seed=21)])
    return runtime


def _view(runtime: Runtime, name: str) -> list[dict[str, Any]]:
    with runtime.db.connect() as conn:
        cur = conn.execute(f'SELECT * FROM "{runtime.db.schema}".{name}')
        cols = [d.name for d in cur.description or ()]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def test_views_give_the_report_numbers(loaded: Runtime) -> None:
    doc = report.kpis(load(loaded.db), loaded.rules, Window())
    funnel = {r["stage"]: r for r in _view(loaded, "kpi_funnel")}
    assert funnel["lead"]["reached"] > 100 and funnel["customer"]["reached"] > 0
    for r in doc["funnel"]:
        assert funnel[r["stage"]]["reached"] == r["reached"], r["stage"]
        assert _num(funnel[r["stage"]]["conversion_pct"]) == r["conversion_pct"], r["stage"]
    stays = {r["stage"]: r for r in _view(loaded, "kpi_time_in_stage")}
    for r in doc["funnel"] + doc["exits"]:
        if r["stays"]:
            v = stays[r["stage"]]
            assert v["stays"] == r["stays"], r["stage"]
            assert _num(v["median_days"]) == pytest.approx(r["median_days"], abs=0.011)
            assert _num(v["p90_days"]) == pytest.approx(r["p90_days"], abs=0.011)
    [cycle] = _view(loaded, "kpi_sales_cycle")
    assert cycle["customers"] == doc["cycle"][0]["customers"] > 0
    assert _num(cycle["average_days"]) == pytest.approx(doc["cycle"][0]["average_days"], abs=0.011)
    assert _num(cycle["longest_days"]) == pytest.approx(doc["cycle"][0]["longest_days"], abs=0.011)
    email = {r["campaign"]: r for r in _view(loaded, "kpi_email")}
    assert doc["email"] and len(email) == len(doc["email"])
    for r in doc["email"]:
        v = email[r["campaign"]]
        assert (v["sent"], v["opened"], v["bounced"]) == (r["sent"], r["opened"], r["bounced"])
        assert _num(v["open_rate_pct"]) == r["open_rate_pct"]
    money = {r["channel"]: r for r in doc["money"]}
    view = _view(loaded, "kpi_cost_per_stage")
    assert view
    for v in view:
        r = money[v["channel"]]
        assert (v["cost"], v["leads"], v["mqls"], v["customers"]) == (
            r["cost"], r["leads"], r["mqls"], r["customers"],
        )  # fmt: skip
        assert v["cost_per_lead"] == r["cost_per_lead"] and v["revenue"] == r["revenue"]
    flow: dict[tuple[str, str], int] = {}
    for v in _view(loaded, "kpi_lead_flow"):
        key = (v["month"], v["source_channel"])
        flow[key] = flow.get(key, 0) + (v["leads"] if v["stage"] == "mql" else 0)
    for r in doc["flow"]:
        assert flow[(r["month"], r["source_channel"])] == r["mql"]


def test_credits_add_up_on_generated_data(loaded: Runtime) -> None:
    ds = load(loaded.db)
    won = rows(loaded, "SELECT sum(won_amount) FROM lead_state WHERE furthest_rank >= 6")[0][0]
    for value, expected in (("conversions", None), ("revenue", won)):
        for by in ("channel", "campaign", "content"):
            results = report.attribution(ds, loaded.rules, Window(), by=by, value=value)
            assert [r.model for r in results] == list(MODELS)
            for r in results:
                total = sum(r.credits.values(), Decimal(0))
                assert total == (expected if expected is not None else r.conversions), r.model
    customers = rows(loaded, "SELECT count(*) FROM lead_state WHERE furthest_rank >= 6")[0][0]
    assert results[0].conversions == customers > 0
    # the sums hold for any weights (credits are rescaled to the total): first and last touch
    # are also checked one by one, counted here from the paths themselves
    paths = build_paths(ds, loaded.rules.attribution)
    counted: dict[str, Counter[str]] = {}
    for model, pick in (("first_touch", 0), ("last_touch", -1)):
        expected_credits = counted[model] = Counter()
        for path in paths.converting:
            expected_credits[path.keys("channel")[pick] if path.touches else NO_TOUCH] += 1
        (result,) = report.attribution(ds, loaded.rules, Window(), model=model, by="channel")
        assert {k: v for k, v in result.credits.items() if v} == dict(expected_credits), model
    assert len(counted["first_touch"]) > 2  # several channels, so a misplaced credit shows
    n = saved.save(loaded.db, results, Window(), loaded.rules.ref)
    stored = rows(
        loaded,
        "SELECT model, sum(credit) FROM attribution_credits WHERE by = 'content' "
        "AND value = 'revenue' GROUP BY model",
    )
    assert n > 0 and dict(stored) == dict.fromkeys(MODELS, won)


def test_as_of_gives_back_what_was_known_then(runtime: Runtime) -> None:
    events = [validate_event(e) for e in generate(120, seed=5)]
    half = len(events) // 2
    _ingest(runtime, events[:half])
    time.sleep(0.01)
    then = datetime.now(UTC)
    time.sleep(0.01)

    def snapshot(as_of: datetime | None) -> str:
        ds = load(runtime.db, as_of)
        doc = report.kpis(ds, runtime.rules, Window())
        att = report.attribution(ds, runtime.rules, Window(), value="revenue", conversion="sql")
        doc["attribution"] = report.attribution_document(att, Window(), runtime.rules)
        return to_json(doc)

    printed_then = snapshot(None)
    _ingest(runtime, events[half:])
    assert snapshot(then) == printed_then
    assert snapshot(None) != printed_then
