"""Attribution details the hand-computed credits do not reach: the rows a report prints (order,
ties, shares of a zero total), the currency only revenue credits carry, Shapley credits weighted
by each path's revenue, and deals worth nothing."""

from __future__ import annotations

from decimal import Decimal

from engine.analytics.attribution import Credits, attribute
from engine.analytics.journeys import Dataset
from engine.analytics.paths import build_paths
from tests.unit.test_attribution import CFG, credits, journey

D = Decimal


def result(credit: dict[str, str], total: str) -> Credits:
    return Credits("linear", "channel", "conversions", "customer", D(total), 3,
                   {k: D(v) for k, v in credit.items()})  # fmt: skip


def test_rows_run_from_the_largest_credit_down_and_ties_in_key_order() -> None:
    # inserted neither by credit nor by key: the order comes from the sort alone
    rows = result({"web": "1", "ads": "0.5", "seo": "1", "email": "0.5"}, "3").rows()
    assert rows == [
        {"channel": "seo", "credit": D("1"), "share_pct": 33.33},
        {"channel": "web", "credit": D("1"), "share_pct": 33.33},
        {"channel": "ads", "credit": D("0.5"), "share_pct": 16.67},
        {"channel": "email", "credit": D("0.5"), "share_pct": 16.67},
    ]


def test_rows_of_a_zero_total_share_zero_percent() -> None:
    rows = result({"ads": "0", "web": "0"}, "0").rows()
    assert rows == [
        {"channel": "ads", "credit": D("0"), "share_pct": 0.00},
        {"channel": "web", "credit": D("0"), "share_pct": 0.00},
    ]


def test_only_revenue_credits_carry_a_currency() -> None:
    js = [journey("l1", [(0, "ads")], opportunity=1, won=2, amount="10")]
    dataset = Dataset(js, [])
    conversions = build_paths(dataset, CFG, currency="USD")
    assert attribute(conversions, "linear", "channel", CFG).currency is None
    revenue = build_paths(dataset, CFG, value="revenue", currency="USD")
    assert attribute(revenue, "linear", "channel", CFG).currency == "USD"


def test_shapley_revenue_weights_each_path_by_its_deal() -> None:
    # v(A) = 1/2, v(B) = 0, v(AB) = 1: the {A, B} path is shared 3/4 : 1/4, the A path is A's
    js = [
        journey("l1", [(0, "A")], opportunity=1, won=2, amount="100"),
        journey("l2", [(0, "A")]),
        journey("l3", [(0, "B")]),
        journey("l4", [(0, "A"), (1, "B")], opportunity=1, won=2, amount="400"),
    ]
    assert credits(js, "shapley", value="revenue") == {"A": D("400.00"), "B": D("100.00")}


def test_won_deals_worth_nothing_give_no_channel_a_credit() -> None:
    js = [journey("l1", [(0, "ads"), (1, "web")], opportunity=1, won=2, amount="0")]
    got = attribute(build_paths(Dataset(js, []), CFG, value="revenue"), "linear", "channel", CFG)
    assert got.credits == {}
    assert got.total == D("0.00")
