"""Issue 15's money through the CLI: one currency per report, dated rates from the rules file,
amounts left out said in the table (CSV: stderr) and in JSON; ROI rounded half up."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.factory import raw, won_deals
from tests.inprocess import run_in_process as run

RATES = """money:
  reporting_currency: EUR
  rates:
    - {from: USD, to: EUR, since: 2026-03-01, rate: "0.90"}
    - {from: USD, to: EUR, since: 2026-03-15, rate: "0.80"}
"""


def _ingest(env: dict[str, str], tmp_path: Path, events: list[dict[str, Any]]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    run(env, "ingest", str(path))


@pytest.fixture
def two_currencies(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A (paid_search) wins 100 EUR then 50 USD; B (organic) wins 70 USD then 30 EUR."""
    events = [
        *won_deals("A", "paid_search", [(9, "100", "EUR"), (19, "50", "USD")]),
        *won_deals("B", "organic", [(4, "70", "USD"), (14, "30", "EUR")]),
    ]
    _ingest(cli_env, tmp_path, events)
    return cli_env


def _linear(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = run(env, "report", "attribution", "--value", "revenue", "--model", "linear",
              "--format", "json", *args).stdout  # fmt: skip
    doc: dict[str, Any] = json.loads(out)
    doc["credits"] = {r["channel"]: r["credit"] for r in doc["models"]["linear"]}
    return doc


def test_attribution_in_one_currency_leaves_the_others_out_and_says_so(
    two_currencies: dict[str, str],
) -> None:
    env = two_currencies
    eur = _linear(env, "--currency", "EUR")
    assert eur["credits"] == {"paid_search": "100.00", "organic": "30.00"}
    assert (eur["total"], eur["currency"]) == ("130.00", "EUR")
    assert eur["left_out"] == [
        {"what": "revenue", "currency": "USD", "items": 2, "amount": "120.00"}
    ]
    usd = _linear(env, "--currency", "USD")
    assert usd["credits"] == {"organic": "70.00", "paid_search": "50.00"}
    assert usd["total"] == "120.00"
    assert usd["left_out"] == [
        {"what": "revenue", "currency": "EUR", "items": 2, "amount": "130.00"}
    ]
    assert _linear(env)["credits"] == usd["credits"]  # shipped reporting currency: USD

    table = run(env, "report", "attribution", "--value", "revenue", "--currency", "EUR").stdout
    assert "(revenue EUR 130.00)" in table
    assert "left out (no rate into EUR): revenue USD 120.00 (2)" in table
    out = run(env, "report", "attribution", "--value", "revenue", "--currency", "EUR",
              "--model", "linear", "--format", "csv")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["channel"]: r["credit"] for r in rows} == eur["credits"]
    assert "left out (no rate into EUR): revenue USD 120.00 (2)" in out.stderr
    bad = run(env, "report", "attribution", "--currency", "euro", ok=False)
    assert bad.returncode != 0 and "--currency 'euro': expected an ISO 4217 code" in bad.stderr


def test_kpi_money_revenue_equals_attributed_revenue(two_currencies: dict[str, str]) -> None:
    out = run(two_currencies, "report", "kpis", "--section", "money", "--currency", "EUR",
              "--format", "json").stdout  # fmt: skip
    doc = json.loads(out)
    total = doc["money"][-1]
    assert total["channel"] == "TOTAL"
    assert total["revenue"] == total["attributed_revenue"] == "130.00"
    assert {(r["what"], r["currency"], r["amount"]) for r in doc["money_left_out"]} == {
        ("revenue", "USD", "120.00"), ("attributed_revenue", "USD", "120.00"),
    }  # fmt: skip
    table = run(two_currencies, "report", "kpis", "--section", "money", "--currency", "EUR")
    assert "in EUR (attributed revenue: linear model)" in table.stdout
    assert "revenue USD 120.00 (2)" in table.stdout


def test_rate_table_in_the_rules_converts_exactly(
    two_currencies: dict[str, str], tmp_path: Path
) -> None:
    shipped = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
    head, _, tail = shipped.partition("money:\n  reporting_currency: USD\n  rates: []\n")
    assert tail, "the shipped rules name their money section as this test expects"
    rules = tmp_path / "rules.yaml"
    rules.write_text(head + RATES + tail, encoding="utf-8")
    env = {**two_currencies, "LEADENGINE_RULES_FILE": str(rules)}
    assert "money in EUR, 2 rates)" in run(env, "rules", "check", str(rules)).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(head + RATES.replace('"0.80"', "-1") + tail, encoding="utf-8")
    refused = run(env, "rules", "check", str(bad), ok=False)
    assert refused.returncode != 0
    assert "money.rates.1.rate: Input should be greater than 0" in refused.stderr
    # EUR by default now; B's 70 USD on 5 March at 0.90 = 63, A's 50 USD on 20 March at 0.80
    doc = _linear(env)
    assert doc["credits"] == {"paid_search": "140.00", "organic": "93.00"}
    assert (doc["total"], doc["currency"], doc["left_out"]) == ("233.00", "EUR", [])
    # no rate into USD: the EUR deals are left out, the rates never read backwards
    assert _linear(env, "--currency", "USD")["left_out"][0]["amount"] == "130.00"


def test_roi_of_449_on_400_is_12_3(cli_env: dict[str, str], tmp_path: Path) -> None:
    cost = {"campaign": "spring", "channel": "display", "amount": "400", "currency": "EUR",
            "period_start": "2026-03-01", "period_end": "2026-03-31"}  # fmt: skip
    events = [
        raw("campaign.cost_recorded", "spring", cost),
        *won_deals("C", "display", [(3, "449", "EUR")]),
    ]
    _ingest(cli_env, tmp_path, events)
    out = run(cli_env, "report", "kpis", "--section", "money", "--currency", "EUR",
              "--format", "json").stdout  # fmt: skip
    display = {r["channel"]: r for r in json.loads(out)["money"]}["display"]
    assert (display["cost"], display["attributed_revenue"]) == ("400.00", "449.00")
    assert display["roi_pct"] == 12.3 and display["contribution_pct"] == 100.0
