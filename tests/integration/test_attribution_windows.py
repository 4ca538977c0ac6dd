"""Attribution credits by window (`<schema>_read.attribution_by_window`): every model side by
side for all time, each month and each quarter, by channel and campaign, conversions and
revenue; each window is what `report attribution --model all --from --to` prints for it, its
credits add up to its total exactly, and a refresh recomputes only the windows new events
touched, ending where recomputing every window ends."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from engine.analytics import windows
from engine.analytics.attribution import MODELS
from engine.readmodel import read_schema
from engine.runtime import Runtime
from tests.factory import raw
from tests.integration.conftest import load_for_readers, reader_login

STABLE = ("window_key", "by", "value", "conversion", "key")


@pytest.fixture
def refreshed(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    load_for_readers(leadengine, tmp_path, 150, 16)  # refreshes every window, first run
    code, out = leadengine("projections", "refresh-attribution")
    assert code == 0 and out.startswith("attribution windows up to date"), out
    return runtime


def _view(runtime: Runtime, server_url: str) -> list[dict[str, Any]]:
    read = sql.Identifier(read_schema(runtime.db.schema))
    with reader_login(runtime.db, server_url) as reader, reader.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            sql.SQL(
                "SELECT * FROM {}.attribution_by_window ORDER BY window_key, by, value, key"
            ).format(read)
        ).fetchall()


def _cli(leadengine: Any, row: dict[str, Any], by: str, value: str) -> dict[str, Any]:
    argv = ["report", "attribution", "--model", "all", "--by", by, "--value", value]
    if row["window_from"] is not None:
        argv += ["--from", row["window_from"].isoformat(), "--to", row["window_to"].isoformat()]
    code, out = leadengine(*argv, "--format", "json")
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_each_window_is_what_report_attribution_says_and_adds_up(
    refreshed: Runtime, leadengine: Any, server_url: str
) -> None:
    rows = _view(refreshed, server_url)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["window_key"], r["by"], r["value"]), []).append(r)
    kinds = {r["window_kind"] for r in rows}
    assert kinds == {"all", "quarter", "month"}, kinds
    for (key, by, value), group in groups.items():
        total = group[0]["total"]
        for model in MODELS:  # every model shares out exactly the window's total
            assert sum(r[model] for r in group) == total, (key, by, value, model)
    # all time, the busiest month and its quarter, against the CLI, figure for figure
    months = [g for g in groups if g[0] != "all" and "Q" not in g[0]]
    busiest = max(months, key=lambda g: groups[g][0]["conversions"])[0]
    start = groups[(busiest, "channel", "conversions")][0]["window_from"]
    quarter = next(
        r["window_key"]
        for r in rows
        if r["window_kind"] == "quarter" and r["window_from"] <= start < r["window_to"]
    )
    checked = 0
    for key in ("all", busiest, quarter):
        for by in windows.BYS:
            for value in windows.VALUES:
                group = groups.get((key, by, value))
                if group is None:
                    continue
                doc = _cli(leadengine, group[0], by, value)
                assert doc["conversions"] == group[0]["conversions"]
                assert Decimal(str(doc["total"])) == group[0]["total"]
                for model in MODELS:
                    want = {r[by]: Decimal(str(r["credit"])) for r in doc["models"][model]}
                    got = {r["key"]: r[model] for r in group if r[model] or r["key"] in want}
                    assert got == want, (key, by, value, model)
                checked += 1
    assert checked >= 9


def _stored(runtime: Runtime) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The table's rows by key, without when they were computed or read up to."""
    with runtime.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(runtime.db.schema, windows.TABLE))
        ).fetchall()
    skip = {"computed_at", "through_position"}
    return {
        tuple(r[c] for c in STABLE): tuple(v for c, v in r.items() if c not in skip) for r in rows
    }


def test_a_refresh_recomputes_only_the_windows_new_events_touched(
    refreshed: Runtime, leadengine: Any, tmp_path: Path, server_url: str
) -> None:
    runtime = refreshed
    before = _stored(runtime)
    # one late touch on a customer's path: its windows change, the others cannot
    with runtime.db.connect() as conn:
        lead_id, key, customer_at = conn.execute(
            sql.SQL(
                "SELECT lead_id, lead_key, customer_at FROM {} WHERE customer_at IS NOT NULL "
                "ORDER BY lead_key LIMIT 1"
            ).format(sql.Identifier(runtime.db.schema, "lead_state"))
        ).fetchone()
        months = {
            m
            for (m,) in conn.execute(
                sql.SQL(
                    "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM {t} "
                    "WHERE lead_id = %(id)s UNION SELECT to_char(occurred_at AT TIME ZONE 'UTC', "
                    "'YYYY-MM') FROM {h} WHERE lead_id = %(id)s"
                ).format(
                    t=sql.Identifier(runtime.db.schema, "lead_touchpoints"),
                    h=sql.Identifier(runtime.db.schema, "lead_stage_history"),
                ),
                {"id": lead_id},
            )
        }
    late = raw("touch.ad_clicked", key, {"channel": "paid_social", "campaign": "late-one"},
               at=customer_at, days=-0.5)  # fmt: skip
    path = tmp_path / "late.jsonl"
    path.write_text(json.dumps(late) + "\n")
    assert leadengine("ingest", str(path))[0] == 0
    assert leadengine("project")[0] == 0
    done = windows.refresh(runtime.db, runtime.rules)
    quarters = {f"{m[:4]}-Q{(int(m[5:]) - 1) // 3 + 1}" for m in months}
    assert not done.full
    assert set(done.windows) == {"all"} | months | quarters
    assert len(done.windows) < len({k[0] for k in before})  # not every window
    after = _stored(runtime)
    assert after != before and any(k[4] == "late-one" for k in after)
    untouched = {k: v for k, v in before.items() if k[0] not in done.windows}
    assert untouched and all(after[k] == v for k, v in untouched.items())
    # the same as recomputing every window
    full = windows.refresh(runtime.db, runtime.rules, full=True)
    assert full.full and _stored(runtime) == after
    # nothing new: nothing to do
    code, out = leadengine("projections", "refresh-attribution")
    assert code == 0 and out.startswith("attribution windows up to date"), out
    # a reporting login reads the freshness: every row read up to the refresh's position
    positions = {r["through_position"] for r in _view(runtime, server_url)}
    assert positions == {full.through_position}


def test_refresh_attribution_every_needs_follow(leadengine: Any) -> None:
    code, _ = leadengine("project", "--refresh-attribution", "30")
    assert code == 2
