"""The read model never adds two currencies: `kpi_cost_per_stage` has a row per channel and
currency that matches the report in that currency; `lead_state.won_amount` is one currency's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import sql

from engine.analytics import queries as reports
from engine.analytics import report, saved
from engine.analytics.load import load
from engine.analytics.report import Window
from engine.domain.contract import validate_event
from engine.postgres import migrations
from engine.readmodel import read_schema
from engine.runtime import Runtime
from tests.factory import raw, won_deals
from tests.integration.test_projections import rows
from tests.integration.test_reports import _ingest, _view

D = Decimal


def _cost(campaign: str, channel: str, amount: str, currency: str) -> dict[str, Any]:
    data = {"campaign": campaign, "channel": channel, "amount": amount, "currency": currency,
            "period_start": "2026-03-01", "period_end": "2026-03-31"}  # fmt: skip
    return raw("campaign.cost_recorded", campaign, data)


def test_views_and_lead_state_keep_currencies_apart(runtime: Runtime) -> None:
    events = [
        *won_deals("A", "paid_search", [(9, "100", "EUR"), (19, "50", "USD")]),
        *won_deals("B", "organic", [(4, "70", "USD"), (14, "30", "EUR")]),
        *won_deals("C", "organic", [(5, "20", "USD"), (6, "5.50", "USD")]),
        *won_deals("D", "email", []),
        _cost("brand", "paid_search", "400", "EUR"),
        _cost("brand-us", "paid_search", "90", "USD"),
    ]
    _ingest(runtime, [validate_event(e) for e in events])

    with runtime.db.connect() as conn:
        won = dict(
            (key, (amount, currency))
            for key, amount, currency in conn.execute(
                f'SELECT lead_key, won_amount, won_currency FROM "{runtime.db.schema}".lead_state'
            ).fetchall()
        )
    assert won == {"A": (None, None), "B": (None, None), "C": (D("25.50"), "USD"),
                   "D": (None, None)}  # fmt: skip

    view = {(v["channel"], v["currency"]): v for v in _view(runtime, "kpi_cost_per_stage")}
    assert set(view) == {("paid_search", "EUR"), ("paid_search", "USD"), ("organic", "EUR"),
                         ("organic", "USD"), ("email", None)}  # fmt: skip
    assert (view["paid_search", "EUR"]["cost"], view["paid_search", "EUR"]["revenue"]) == (
        D("400.00"), D(100),
    )  # fmt: skip
    assert view["organic", "USD"]["revenue"] == D("95.50")  # B's 70 and C's 25.50, no EUR
    assert view["email", None]["leads"] == 1 and view["email", None]["revenue"] == 0

    ds = load(runtime.db)
    for currency in ("EUR", "USD"):
        doc = report.kpis(ds, runtime.rules, Window(), currency=currency)
        for r in doc["money"][:-1]:
            v = view.get((r["channel"], currency))
            if v is None:
                assert r["cost"] == 0 and r["revenue"] == 0, (r, currency)
                continue
            assert (v["cost"], v["revenue"], v["leads"], v["customers"]) == (
                r["cost"], r["revenue"], r["leads"], r["customers"],
            ), currency  # fmt: skip
            assert v["cost_per_lead"] == r["cost_per_lead"]


def test_saved_revenue_credits_say_their_currency(runtime: Runtime) -> None:
    events = [
        *won_deals("A", "paid_search", [(9, "100", "EUR"), (19, "50", "USD")]),
        *won_deals("B", "organic", [(4, "70", "USD"), (14, "30", "EUR")]),
    ]
    _ingest(runtime, [validate_event(e) for e in events])
    ds = load(runtime.db)
    for currency in ("USD", "EUR"):  # the EUR run replaces the USD one whole
        results = report.attribution(ds, runtime.rules, Window(), model="linear",
                                     value="revenue", currency=currency)  # fmt: skip
        saved.save(runtime.db, results, Window(), runtime.rules.ref)
    results = report.attribution(ds, runtime.rules, Window(), model="linear")
    saved.save(runtime.db, results, Window(), runtime.rules.ref)
    stored = rows(
        runtime,
        "SELECT value, key, credit, total, currency FROM attribution_credits ORDER BY 1, 2",
    )
    assert stored == [
        ("conversions", "organic", D(1), D(2), None),
        ("conversions", "paid_search", D(1), D(2), None),
        ("revenue", "organic", D(30), D(130), "EUR"),
        ("revenue", "paid_search", D(100), D(130), "EUR"),
    ]


def test_migration_10_adds_the_currency_to_a_schema_without_it(
    runtime: Runtime, leadengine: Any
) -> None:
    schema, read = runtime.db.schema, read_schema(runtime.db.schema)
    credits = sql.Identifier(schema, "attribution_credits")
    with runtime.db.connect() as conn:  # as the previous build left it
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.Identifier(read, "attribution_credits")))
        conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN currency").format(credits))
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 10").format(
                sql.Identifier(schema, migrations.TABLE)
            )
        )
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied 10 attribution_credits.currency" in out
    with runtime.db.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(read, "attribution_credits"))
        )
        assert "currency" in {d.name for d in cur.description or ()}
    assert not migrations.status(runtime.db).pending


def test_report_funnel_rounds_half_away_from_zero(runtime: Runtime) -> None:
    """1 of 16 leads reached MQL (sales accepted it, MQL implied): 6.25% is 6.3, not 6.2."""
    events = [raw("lead.captured", f"k{i}", {"email": f"k{i}@acme.example"}) for i in range(16)]
    events.append(raw("sales.accepted", "k0", {"rep": "ann"}, days=1))
    _ingest(runtime, [validate_event(e) for e in events])
    stages = {r["stage"]: r for r in reports.funnel(runtime.db)["stages"]}
    assert (stages["lead"]["reached"], stages["mql"]["reached"]) == (16, 1)
    assert round(100.0 * 1 / 16, 1) == 6.2  # what it printed: banker's rounding of a float
    assert stages["mql"]["conversion_pct"] == 6.3
