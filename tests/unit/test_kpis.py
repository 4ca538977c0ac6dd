"""Funnel, follow-up, engagement and money KPIs on three hand-made leads, values worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from engine.analytics import followup, funnel, money
from engine.analytics.attribution import attribute
from engine.analytics.journeys import Cost, Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import ReportError, build_paths
from engine.domain.rules import Attribution

T0 = datetime(2026, 3, 1, tzinfo=UTC)
D = Decimal


def at(days: float, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def touch(
    when: datetime, seq: int, kind: str, channel: str, campaign: str | None = None
) -> Touchpoint:
    return Touchpoint(when, seq, f"touch.{kind}", channel, campaign)


def moves(*steps: tuple[float, str, str]) -> list[Move]:
    return [Move(at(d), a, b, f"{a}->{b}") for d, a, b in steps]


def dataset() -> Dataset:
    l1 = Journey("l1")
    l1.touches = [
        touch(at(0), 1, "page_viewed", "ads", "ads-c"),
        touch(at(1), 2, "form_submitted", "web", "web-c"),
        touch(at(2, 3), 3, "call_logged", "sales"),
        touch(at(4), 4, "call_logged", "sales"),
    ]
    l1.moves = moves(
        (1, "anonymous", "lead"),
        (2, "lead", "mql"),
        (3, "mql", "sal"),
        (5, "sal", "sql"),
        (6, "sql", "opportunity"),
        (11, "opportunity", "customer"),
    )
    l1.milestones = [
        Milestone(at(1), "lead.captured"),
        Milestone(at(3), "sales.accepted", "ann"),
        Milestone(at(6), "opportunity.opened", amount=D(900), currency="USD"),
        Milestone(at(11), "deal.won", amount=D(1000), currency="USD"),
    ]
    l1.routed = [at(2)]
    l2 = Journey("l2")
    l2.touches = [
        touch(at(0), 10, "email_sent", "email", "news"),
        touch(at(0, 1), 11, "email_opened", "email", "news"),
        touch(at(3, 1), 12, "call_logged", "sales"),
    ]
    l2.moves = moves((0, "anonymous", "lead"), (3, "lead", "mql"), (4, "mql", "recycled"))
    l2.milestones = [
        Milestone(at(0), "lead.captured"),
        Milestone(at(3), "owner.assigned", "bob"),
        Milestone(at(4), "sales.rejected", "bob", "no budget"),
    ]
    l3 = Journey("l3")
    l3.touches = [
        touch(at(10), 20, "page_viewed", "web", "web-c"),
        touch(at(11), 21, "call_logged", "sales"),
    ]
    l3.moves = moves((10, "anonymous", "lead"), (12, "lead", "disqualified"))
    l3.milestones = [
        Milestone(at(10), "lead.captured"),
        Milestone(at(12), "sales.disqualified", "bob", "student"),
    ]
    costs = [Cost("ads-c", "ads", D(310), "USD", T0.date(), datetime(2026, 3, 31).date())]
    return Dataset([l1, l2, l3], costs)


def test_funnel_counts_conversion_and_time_in_stage() -> None:
    rows = {r["stage"]: r for r in funnel.stages(dataset())}
    assert [
        rows[s]["reached"] for s in ("lead", "mql", "sal", "sql", "opportunity", "customer")
    ] == [
        3,
        2,
        1,
        1,
        1,
        1,
    ]
    assert rows["lead"]["conversion_pct"] is None
    assert rows["mql"]["conversion_pct"] == 66.7
    assert rows["sal"]["conversion_pct"] == 50.0
    # lead stays: 1 (l1), 3 (l2), 2 (l3) days -> median 2, p90 2 + 0.8 * 1
    assert (rows["lead"]["stays"], rows["lead"]["median_days"], rows["lead"]["p90_days"]) == (
        3,
        2.0,
        2.8,
    )
    assert (rows["opportunity"]["median_days"], rows["customer"]["stays"]) == (5.0, 0)


def test_cohort_window_and_sales_cycle() -> None:
    ds = dataset()
    early = {r["stage"]: r["reached"] for r in funnel.stages(ds, None, at(5))}
    assert early["lead"] == 2  # l3 was created on day 10
    assert funnel.sales_cycle(ds) == {
        "customers": 1,
        "average_days": 10.0,
        "median_days": 10.0,
        "shortest_days": 10.0,
        "longest_days": 10.0,
    }


def test_funnel_by_source() -> None:
    rows = {r["source_channel"]: r for r in funnel.by_source(dataset())}
    assert sorted(rows) == ["ads", "email", "web"]
    assert (rows["ads"]["customer"], rows["ads"]["lead_to_customer_pct"]) == (1, 100.0)
    assert rows["ads"]["cycle_average_days"] == 10.0
    assert (rows["email"]["mql"], rows["email"]["lead_to_customer_pct"]) == (1, 0.0)


def test_lead_flow_by_month_and_source() -> None:
    rows = funnel.lead_flow(dataset(), period="month")
    stages = ("lead", "mql", "sal", "sql", "opportunity", "customer")
    assert [(r["month"], r["source_channel"], *(r[s] for s in stages)) for r in rows] == [
        ("2026-03", "ads", 1, 1, 1, 1, 1, 1),
        ("2026-03", "email", 1, 1, 0, 0, 0, 0),
        ("2026-03", "web", 1, 0, 0, 0, 0, 0),
    ]
    weekly = funnel.lead_flow(dataset(), period="week")
    # weeks start on Monday: 1 March 2026 is a Sunday
    assert [(r["week"], r["source_channel"]) for r in weekly] == [
        ("2026-02-23", "email"),  # l2 created on Sunday 1 March
        ("2026-03-02", "ads"),  # l1 created, MQL, SAL, SQL, opportunity from 2 March
        ("2026-03-02", "email"),  # l2 MQL on 4 March
        ("2026-03-09", "ads"),  # l1 customer on 12 March
        ("2026-03-09", "web"),  # l3 created on 11 March
    ]
    assert sum(r["lead"] for r in weekly) == 3 and sum(r["customer"] for r in weekly) == 1


def test_sales_followup_acceptance_and_speed_to_lead() -> None:
    got = followup.sales_followup(dataset())
    # l1: routed at day 2, first call 3 h later; l2: assigned day 3, call 1 h later
    assert got["mqls"] == 2 and (got["accepted"], got["rejected"]) == (1, 1)
    assert got["acceptance_pct"] == 50.0
    assert got["speed_to_lead_median_hours"] == 2.0
    assert got["speed_to_lead_p90_hours"] == 2.8
    assert got["not_yet_touched"] == 0


def test_dials_and_reasons() -> None:
    ds = dataset()
    dials = {r["outcome"]: r for r in followup.dials(ds)}
    assert (dials["sql"]["leads"], dials["sql"]["dials"], dials["sql"]["dials_per_lead"]) == (
        1,
        2,
        2.0,
    )
    assert (dials["disqualified"]["leads"], dials["disqualified"]["dials"]) == (1, 1)
    assert followup.reasons(ds) == [
        {"outcome": "disqualified", "reason": "student", "leads": 1},
        {"outcome": "rejected", "reason": "no budget", "leads": 1},
    ]


def test_email_rates_and_clusters() -> None:
    ds = dataset()
    [news] = followup.email(ds)
    assert (news["campaign"], news["sent"], news["opened"], news["delivered"]) == ("news", 1, 1, 1)
    assert (news["open_rate_pct"], news["click_rate_pct"], news["bounce_rate_pct"]) == (
        100.0,
        0.0,
        0.0,
    )
    paths = build_paths(ds, Attribution())
    assert followup.clusters(paths) == [
        {
            "sequence": "page_viewed > form_submitted > call_logged",
            "conversions": 1,
            "share_pct": 100.0,
        }
    ]


def test_cost_per_stage_revenue_roi() -> None:
    ds = dataset()
    cfg = Attribution()
    linear = attribute(build_paths(ds, cfg, value="revenue"), "linear", "channel", cfg)
    # l1's path: ads page view, web form, two sales calls -> 250 each
    assert linear.credits == {"ads": D(250), "sales": D(500), "web": D(250)}
    rows = {r["channel"]: r for r in money.money(ds, attributed=linear)}
    ads = rows["ads"]
    assert (ads["cost"], ads["leads"], ads["customers"], ads["cost_per_customer"]) == (
        D("310.00"),
        1,
        1,
        D("310.00"),
    )
    assert ads["revenue"] == D(1000) and ads["revenue_per_customer"] == D("1000.00")
    assert ads["roi_pct"] == round((250 - 310) / 310 * 100, 1)
    assert ads["contribution_pct"] == 25.0
    assert rows["TOTAL"]["leads"] == 3 and rows["TOTAL"]["cost_per_lead"] == D("103.33")
    # half of March (15 of 31 days) counts in a window of 1-16 March
    half = {r["channel"]: r for r in money.money(ds, T0, at(15))}
    assert half["ads"]["cost"] == D("150.00")


def test_mixed_currency_costs_need_a_choice() -> None:
    ds = dataset()
    ds.costs.append(Cost("x", "ads", D(1), "EUR", T0.date(), T0.date()))
    with pytest.raises(ReportError, match="several currencies"):
        money.money(ds)
    assert {r["channel"]: r["cost"] for r in money.money(ds, currency="EUR")}["ads"] == D("1.00")


def test_exits_count_a_lead_still_sitting_in_nurture_up_to_the_datas_moment() -> None:
    sitting = Journey("sitting")
    sitting.moves = moves((0, "anonymous", "lead"), (1, "lead", "nurture"))
    other = Journey("other")
    other.moves = moves((2, "anonymous", "lead"))
    other.touches = [touch(at(11), 1, "page_viewed", "web")]  # the latest thing that happened
    rows = {r["stage"]: r for r in funnel.exits(Dataset([sitting, other], []))}
    assert rows["nurture"]["stays"] == 0  # nobody has left nurture
    assert rows["nurture"]["open"] == 1
    assert rows["nurture"]["open_median_days"] == 10.0  # day 1 to day 11
    assert rows["lost"]["open"] == 0 and rows["lost"]["open_median_days"] is None


def test_exits_show_completed_and_open_stays_apart() -> None:
    rows = {r["stage"]: r for r in funnel.exits(dataset())}
    assert (rows["recycled"]["stays"], rows["recycled"]["open"]) == (0, 1)
    assert rows["recycled"]["open_median_days"] == 8.0  # day 4 to day 12, the data's moment
    assert (rows["disqualified"]["open"], rows["disqualified"]["open_median_days"]) == (1, 0.0)
