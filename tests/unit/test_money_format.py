"""Money reads the same everywhere: a string in the currency's minor unit in JSON and CSV
(`0.00`, never `0`), booleans `true`/`false` in CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace
from decimal import Decimal

from engine.analytics import money
from engine.analytics.attribution import Credits, attribute, side_by_side
from engine.analytics.journeys import Dataset
from engine.analytics.paths import build_paths
from engine.cli.output import to_csv, to_json
from engine.domain.currency import minor_unit
from engine.domain.currency import money as to_money
from engine.domain.rules import Attribution
from tests.unit.test_kpis import dataset

MONEY = ("cost", "revenue", "revenue_per_customer", "attributed_revenue")
CENTS = re.compile(r"^\d+\.\d{2}$")


def _money_rows(ds: Dataset) -> list[dict[str, object]]:
    cfg = Attribution()
    credits = attribute(build_paths(ds, cfg, value="revenue"), "linear", "channel", cfg)
    return money.money(ds, attributed=credits)


def _money_columns(row: dict[str, object]) -> list[str]:
    return [k for k in row if k in MONEY or k.startswith("cost_per_")]


def test_every_amount_has_two_decimals_in_json_and_csv() -> None:
    rows = _money_rows(dataset())
    doc = json.loads(to_json(rows))
    amounts = [r[k] for r in doc for k in _money_columns(r) if r[k] is not None]
    assert amounts and all(isinstance(a, str) and CENTS.match(a) for a in amounts), amounts
    assert {r["channel"]: r["revenue"] for r in doc}["email"] == "0.00"  # was "0"
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    cells = [r[k] for r in table for k in _money_columns(r) if r[k]]
    assert cells == amounts


def test_amounts_follow_the_currency_exponent() -> None:
    ds = dataset()
    for journey in ds.journeys:
        journey.milestones = [
            replace(m, currency="JPY") if m.currency else m for m in journey.milestones
        ]
    ds.costs[:] = [replace(c, currency="JPY") for c in ds.costs]
    doc = json.loads(to_json(_money_rows(ds)))
    ads = {r["channel"]: r for r in doc}["ads"]
    assert (ads["cost"], ads["revenue"], ads["attributed_revenue"]) == ("310", "1000", "250")
    assert minor_unit("KWD") == Decimal("0.001") and str(to_money(Decimal("1.5"), "KWD")) == "1.500"
    assert str(to_money(Decimal(0))) == "0.00"


def test_a_channel_a_model_gave_no_credit_reads_zero_like_the_others() -> None:
    cents = Decimal("0.01")
    five = Decimal("5.00")
    a = Credits("first_touch", "channel", "revenue", "customer", five, 1, {"ads": five}, cents)
    b = Credits("last_touch", "channel", "revenue", "customer", five, 1, {"web": five}, cents)
    rows = json.loads(to_json(side_by_side([a, b])))
    assert {r["channel"]: (r["first_touch"], r["last_touch"]) for r in rows} == {
        "ads": ("5.00", "0.00"),
        "web": ("0.00", "5.00"),
        "TOTAL": ("5.00", "5.00"),
    }


def test_booleans_in_csv_are_lowercase_and_json_keeps_them() -> None:
    rows = [{"lead": "k1", "mql_old": True, "mql_new": False, "cost": to_money(Decimal(0))}]
    assert to_csv(rows).splitlines() == ["lead,mql_old,mql_new,cost", "k1,true,false,0.00"]
    assert json.loads(to_json(rows)) == [
        {"lead": "k1", "mql_old": True, "mql_new": False, "cost": "0.00"}
    ]
