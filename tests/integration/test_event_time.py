"""Event time through PostgreSQL: the same facts, delivered sorted or shuffled (and projected
while they arrive, or rebuilt afterwards), give the same fact-driven read model and reports."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine.analytics import funnel
from engine.analytics.attribution import attribute
from engine.analytics.load import load
from engine.analytics.models import RULE_BASED
from engine.analytics.paths import build_paths
from engine.domain.contract import Envelope, validate_event
from engine.domain.generator import generate
from engine.domain.rules import Rules
from engine.postgres import db as dbmod
from engine.projections.rebuild import rebuild
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.unit.test_event_time import late_first_win, upsell_story

#: lead_state's stage moments, MQL's aside (an engine decision, taken on arrival)
FACT_MOMENTS = (
    "captured_at, sal_at, sql_at, opportunity_at, customer_at, nurture_at, recycled_at, "
    "disqualified_at, lost_at"
)


@pytest.fixture
def second(server_url: str, rules: Rules, tmp_path: Path) -> Iterator[Runtime]:
    """Another engine and read model, in a schema of its own."""
    database = dbmod.from_url(server_url, f"t_{uuid.uuid4().hex[:12]}")
    settings = Settings(
        database_url=server_url, database_schema=database.schema, home=tmp_path / "second"
    )  # type: ignore[arg-type]
    with open_runtime(settings, rules=rules, database=database) as rt:
        yield rt
    dbmod.drop_schema(database)


def select(rt: Runtime, query: str) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(rt.db.schema)))
        return sorted(conn.execute(query).fetchall())  # type: ignore[call-overload]


def fact_driven(rt: Runtime) -> dict[str, Any]:
    """What must not depend on arrival order: the fact-driven rows and the reports on them."""
    ds = load(rt.db)
    cfg = rt.rules.attribution
    paths = build_paths(ds, cfg)
    return {
        "history": select(
            rt,
            "SELECT lead_key, to_stage, trigger_event_id, occurred_at FROM lead_stage_history "
            "WHERE to_stage <> 'mql' AND retracted_at IS NULL",
        ),
        "state": select(rt, f"SELECT lead_key, {FACT_MOMENTS} FROM lead_state"),
        "kpi_reached": select(
            rt, "SELECT lead_key, stage, reached_at FROM kpi_stage_reached WHERE stage <> 'mql'"
        ),
        "kpi_cycle": select(rt, "SELECT * FROM kpi_sales_cycle"),
        "funnel": [fact_row(row) for row in funnel.stages(ds) if row["stage"] != "mql"],
        "cycle": funnel.sales_cycle(ds),
        "to_15th": len(build_paths(ds, cfg, end=datetime(2026, 3, 15, tzinfo=UTC)).converting),
        "credits": {m: attribute(paths, m, "channel", cfg).credits for m in RULE_BASED},
    }


def fact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A funnel row less what MQL decisions shape: the stay in `lead` (it ends at the MQL
    decision) and the conversion into `sal` (counted from the leads that reached mql)."""
    if row["stage"] in ("lead", "sal"):
        return {"stage": row["stage"], "reached": row["reached"]}
    return row


def events(seed: int) -> list[Envelope]:
    made = generate(25, seed=seed, out_of_order=0, duplicates=0)
    return [validate_event(e) for e in made] + upsell_story()


def test_sorted_and_shuffled_arrival_project_the_same_fact_driven_read_model(
    runtime: Runtime, second: Runtime
) -> None:
    ordered = sorted(events(31), key=lambda e: e.occurred_at)
    runtime.app.ingest(ordered)
    runtime.projector.run()
    expected = fact_driven(runtime)
    assert expected["to_15th"] == 1  # the story's lead, whose first win was on 03-10

    shuffled = [e for e in ordered if e.subject != "ann"]
    random.Random(5).shuffle(shuffled)
    *before, first_win = late_first_win()
    second.app.ingest(before)
    second.projector.run()
    then = datetime.now(UTC)  # the engine has the upsell as the customer moment (03-20)
    shuffled = [first_win, *shuffled]
    second.projector.batch_size = 37
    for start in range(0, len(shuffled), 150):  # projected while the late facts arrive
        second.app.ingest(shuffled[start : start + 150])
        second.projector.run()
    customer = select(
        second,
        "SELECT occurred_at, retracted_at IS NOT NULL FROM lead_stage_history "
        "WHERE lead_key = 'ann' AND to_stage = 'customer'",
    )
    march = [datetime(2026, 3, d, 9, 0, tzinfo=UTC) for d in (10, 20)]
    assert customer == [(march[0], False), (march[1], True)]  # 03-20 kept, retracted
    [ann] = [j for j in load(second.db, then).journeys if j.key == "ann"]
    assert ann.reached_at("customer") == march[1]  # --as-of then: what the engine said then
    [ann] = [j for j in load(second.db).journeys if j.key == "ann"]
    assert ann.reached_at("customer") == march[0]
    assert fact_driven(second) == expected

    rebuild(second.app, second.db, "history", batch_size=41)  # the bulk load, from the log
    rebuild(second.app, second.db, "leads", batch_size=41)
    assert fact_driven(second) == expected
