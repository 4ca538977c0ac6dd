"""Money keeps its currency: revenue per currency, one report currency, dated rates or amounts
left out and counted; one rounding rule (half away from zero, decimal); ties in a fixed order."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics import money, report
from engine.analytics.allocate import exact_split
from engine.analytics.attribution import Credits, attribute
from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.journeys import Cost, Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import ReportError, build_paths
from engine.analytics.report import Window
from engine.cli.html import page
from engine.domain.errors import RulesError
from engine.domain.rules import Attribution, Rate, Rules, load_rules, parse_rules

T0 = datetime(2026, 3, 1, tzinfo=UTC)
D = Decimal
RULES = load_rules()


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def lead(key: str, channel: str, deals: list[tuple[float, str, str]]) -> Journey:
    """One touch on day 0 from `channel`, captured then, customer at the first deal."""
    j = Journey(key)
    j.touches = [Touchpoint(at(0), 1, "touch.page_viewed", channel)]
    j.moves = [Move(at(0), "anonymous", "lead", "lead.captured")]
    j.milestones = [Milestone(at(0), "lead.captured")]
    j.moves.append(Move(at(deals[0][0]), "lead", "customer", "deal.won"))
    for day, amount, currency in deals:
        j.milestones.append(Milestone(at(day), "deal.won", amount=D(amount), currency=currency))
    j.sort()
    return j


def issue_case() -> Dataset:
    """Issue 15: A (paid_search) wins 100 EUR then 50 USD; B (organic) 70 USD then 30 EUR."""
    a = lead("A", "paid_search", [(9, "100", "EUR"), (19, "50", "USD")])
    b = lead("B", "organic", [(4, "70", "USD"), (14, "30", "EUR")])
    return Dataset([a, b], [])


def with_rates(*rates: dict[str, object], currency: str = "USD") -> Rules:
    money_cfg = {"reporting_currency": currency, "rates": list(rates)}
    return Rules.model_validate({**RULES.model_dump(by_alias=True), "money": money_cfg})


def revenue(ds: Dataset, currency: str | None, rules: Rules = RULES) -> Credits:
    [credits] = report.attribution(
        ds, rules, Window(), model="linear", value="revenue", currency=currency
    )
    return credits


def test_journey_revenue_is_per_currency() -> None:
    a, b = issue_case().journeys
    assert a.revenue() == {"EUR": D(100), "USD": D(50)}
    assert b.revenue(until=at(10)) == {"USD": D(70)}


def test_issue_case_in_eur_leaves_usd_out_and_says_how_much() -> None:
    eur = revenue(issue_case(), "EUR")
    assert eur.credits == {"paid_search": D("100.00"), "organic": D("30.00")}
    assert eur.total == D("130.00") and eur.currency == "EUR"
    assert eur.left_out == [
        {"what": "revenue", "currency": "USD", "items": 2, "amount": D("120.00")}
    ]


def test_issue_case_in_usd_and_by_default_the_reporting_currency() -> None:
    usd = revenue(issue_case(), "USD")
    assert usd.credits == {"paid_search": D("50.00"), "organic": D("70.00")}
    assert usd.total == D("120.00")
    assert usd.left_out == [
        {"what": "revenue", "currency": "EUR", "items": 2, "amount": D("130.00")}
    ]
    assert RULES.money.reporting_currency == "USD"
    assert revenue(issue_case(), None) == usd
    in_eur = with_rates(currency="EUR")
    assert revenue(issue_case(), None, in_eur).credits == {
        "paid_search": D("100.00"), "organic": D("30.00"),
    }  # fmt: skip


def test_dated_rates_convert_exactly_and_a_deal_before_any_rate_is_left_out() -> None:
    # USD -> EUR: 0.90 from 1 March, 0.80 from 15 March (A's USD deal is on the 20th)
    rules = with_rates(
        {"from": "USD", "to": "EUR", "since": "2026-03-01", "rate": "0.90"},
        {"from": "USD", "to": "EUR", "since": "2026-03-15", "rate": 0.8},
        {"from": "EUR", "to": "USD", "since": "2026-03-10", "rate": "1.125"},
    )
    eur = revenue(issue_case(), "EUR", rules)
    assert eur.credits == {"paid_search": D("140.00"), "organic": D("93.00")}  # 100+40, 63+30
    assert eur.total == D("233.00") and eur.left_out == []
    usd = revenue(issue_case(), "USD", rules)
    # A's 100 EUR on 10 March: 112.50; B's 30 EUR on 15 March: 33.75; A's EUR deal is dated
    # the 10th, the day the rate starts (inclusive)
    assert usd.credits == {"paid_search": D("162.50"), "organic": D("103.75")}
    early = lead("C", "ads", [(5, "10", "EUR")])  # 6 March: before the EUR -> USD rate
    mixed = revenue(Dataset([*issue_case().journeys, early], []), "USD", rules)
    assert mixed.total == D("266.25")
    assert mixed.left_out == [{"what": "revenue", "currency": "EUR", "items": 1, "amount": D(10)}]


def test_a_converted_deal_is_rounded_half_up_to_the_minor_unit_once() -> None:
    jpy = {"from": "JPY", "to": "EUR", "since": date(2026, 1, 1), "rate": "0.00615"}
    ex = Exchange("EUR", [Rate.model_validate(jpy)])
    assert ex.deal(D(1000), "JPY", T0) == D("6.15")
    assert ex.deal(D(2500), "JPY", T0) == D("15.38")  # 15.375 -> 15.38
    assert ex.deal(D(1), "JPY", datetime(2025, 12, 31, 23, 59, tzinfo=UTC)) is None
    # 31 Dec 22:30 at UTC-2 is 1 Jan 00:30 UTC: the rate's first day
    minus_two = timezone(timedelta(hours=-2))
    assert ex.deal(D(1000), "JPY", datetime(2025, 12, 31, 22, 30, tzinfo=minus_two)) == D("6.15")
    assert ex.deal(D("1.234"), "EUR", datetime(2020, 1, 1, tzinfo=UTC)) == D("1.234")


def test_kpi_money_revenue_equals_attributed_revenue_per_currency() -> None:
    ds = issue_case()
    for currency, total in (("EUR", D("130.00")), ("USD", D("120.00"))):
        doc = report.kpis(ds, RULES, Window(), currency=currency)
        total_row = doc["money"][-1]
        assert total_row["revenue"] == total_row["attributed_revenue"] == total
        assert doc["currency"] == currency
        whats = {(r["what"], r["currency"]) for r in doc["money_left_out"]}
        other = "USD" if currency == "EUR" else "EUR"
        assert whats == {("revenue", other), ("attributed_revenue", other)}


def test_costs_convert_at_their_first_days_rate_or_are_left_out() -> None:
    ds = issue_case()
    ds.costs.append(Cost("c", "paid_search", D(200), "EUR", date(2026, 3, 1), date(2026, 3, 31)))
    ds.costs.append(Cost("d", "organic", D(10), "USD", date(2026, 3, 1), date(2026, 3, 31)))
    rules = with_rates({"from": "EUR", "to": "USD", "since": "2026-03-01", "rate": "1.1"})
    rows = {r["channel"]: r for r in report.kpis(ds, rules, Window(), currency="USD")["money"]}
    assert rows["paid_search"]["cost"] == D("220.00") and rows["organic"]["cost"] == D("10.00")
    left = LeftOut()
    money.money(ds, currency="GBP", left_out=left)
    assert {(r["what"], r["currency"], r["amount"]) for r in left.rows()} == {
        ("cost", "EUR", D("200.00")), ("cost", "USD", D("10.00")),
        ("revenue", "EUR", D("130.00")), ("revenue", "USD", D("120.00")),
    }  # fmt: skip


def test_no_currency_given_and_several_in_the_data_is_still_an_error() -> None:
    with pytest.raises(ReportError, match=r"several currencies \(EUR, USD\)"):
        build_paths(issue_case(), Attribution(), value="revenue")
    with pytest.raises(ReportError, match="--currency 'eur': expected an ISO 4217 code"):
        revenue(issue_case(), "eur")


def test_roi_449_on_400_prints_12_3_half_away_from_zero() -> None:
    ds = Dataset([lead("A", "ads", [(3, "449", "EUR")])], [])
    ds.costs.append(Cost("c", "ads", D(400), "EUR", date(2026, 3, 1), date(2026, 3, 1)))
    cfg = Attribution()
    credits = attribute(build_paths(ds, cfg, value="revenue"), "linear", "channel", cfg)
    ads = {r["channel"]: r for r in money.money(ds, attributed=credits)}["ads"]
    assert round(12.25, 1) == 12.2  # what Python's round gave: banker's, on a binary float
    assert ads["roi_pct"] == 12.3 and ads["contribution_pct"] == 100.0
    ds.journeys[0].milestones[-1] = Milestone(at(3), "deal.won", amount=D(351), currency="EUR")
    credits = attribute(build_paths(ds, cfg, value="revenue"), "linear", "channel", cfg)
    ads = {r["channel"]: r for r in money.money(ds, attributed=credits)}["ads"]
    assert ads["roi_pct"] == -12.3  # -12.25: half away from zero, below zero too


def test_share_pct_rounds_the_exact_decimal_half_up() -> None:
    credits = Credits("linear", "channel", "conversions", "customer", D(10), 10,
                      {"a": D("1.2345"), "b": D("8.7655")})  # fmt: skip
    assert round(100 * 1.2345 / 10, 2) == 12.34  # the binary float lies just below 12.345
    shares = {r["channel"]: r["share_pct"] for r in credits.rows()}
    assert shares == {"a": 12.35, "b": 87.66}


def test_ties_go_to_keys_in_code_point_order_whatever_the_input_order() -> None:
    third = 1 / 3
    q = D("0.0001")
    forward = exact_split({"a": third, "b": third, "c": third}, D(1), q)
    backward = exact_split({"c": third, "b": third, "a": third}, D(1), q)
    assert forward == backward == {"a": D("0.3334"), "b": D("0.3333"), "c": D("0.3333")}
    # float noise: 0.1 + 0.2 is 0.30000000000000004, not more than 0.3 as a credit
    noisy = exact_split({"c": 0.1 + 0.2, "b": 0.3, "a": 0.3}, D(1), q)
    assert noisy == {"a": D("0.3334"), "b": D("0.3333"), "c": D("0.3333")}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=7),
    units=st.integers(min_value=1, max_value=50),
    order=st.randoms(use_true_random=False),
)
def test_equal_credits_split_the_same_in_any_order(n: int, units: int, order: object) -> None:
    keys = [f"k{i}" for i in range(n)]
    shuffled = list(keys)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    # the same credit reached by sums in different orders (different last bits)
    raw = {k: sum([0.1] * (i + 3)) / (i + 3) for i, k in enumerate(shuffled)}
    got = exact_split(raw, D(units), D(1))
    base, extra = divmod(units, n)
    assert got == {k: D(base + (1 if i < extra else 0)) for i, k in enumerate(sorted(keys))}


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ('[{from: EUR, to: EUR, since: 2026-01-01, rate: 1}]', "from and to are both EUR"),
        ('[{from: EUR, to: USD, since: 2026-01-01, rate: 1.1}, '
         '{from: EUR, to: USD, since: 2026-01-01, rate: 1.2}]',
         "a second EUR->USD rate since 2026-01-01"),
        ('[{from: EUR, to: USD, since: 2026-01-01, rate: 0}]', "greater than 0"),
        ('[{from: EUR, to: USD, since: 2026-01-01, rate: .nan}]', "finite number"),
        ('[{from: eur, to: USD, since: 2026-01-01, rate: 1}]', "money.rates.0.from"),
        ('[{from: EUR, to: USD, since: March, rate: 1}]', "money.rates.0.since"),
        ('[{from: EUR, to: USD, rate: 1}]', "money.rates.0.since: Field required"),
        ('[{from: EUR, to: USD, since: 2026-01-01, rate: 1, until: 2026-02-01}]',
         "money.rates.0.until: Extra inputs"),
    ],
)  # fmt: skip
def test_bad_rate_tables_are_clear_errors(rates: str, message: str) -> None:
    text = f"name: t\nversion: '1'\nmoney:\n  reporting_currency: EUR\n  rates: {rates}\n"
    with pytest.raises(RulesError, match=message.replace(".", r"\.").replace("(", r"\(")) as e:
        parse_rules(text, source="r.yaml")
    assert str(e.value).startswith("r.yaml:")  # where, then which field


def test_reporting_currency_must_be_an_iso_code() -> None:
    with pytest.raises(RulesError, match=r"money\.reporting_currency"):
        parse_rules("name: t\nversion: '1'\nmoney: {reporting_currency: euro}\n")


def test_the_html_page_lists_what_was_left_out() -> None:
    ds = issue_case()
    doc = report.kpis(ds, RULES, Window(), currency="EUR")
    results = report.attribution(ds, RULES, Window(), currency="EUR")
    doc["attribution"] = report.attribution_document(results, Window(), RULES)
    html = page(doc)
    assert "Cost per stage in EUR" in html and "Left out (no rate into this currency)" in html
    assert "<td>attributed_revenue</td><td>USD</td><td>2</td><td>120.00</td>" in html
