"""Streamed KPIs (`report.kpis_of`: journeys one at a time into per-group sums) give exactly the
document of the in-memory report (`report.kpis` over a Dataset), every section, for random
journeys (touches, stage moves with skips and exits, sales decisions, owners, routings, deals in
several currencies), cost lines, windows, groupings, periods, models and currencies; and the
page `report html` draws (`report.page_document_of`) is the in-memory page's document."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.analytics import report
from engine.analytics.journeys import Cost, Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import ReportError
from engine.analytics.report import Window
from engine.domain.lifecycle import STAGES
from engine.domain.rules import Attribution, Money, Rate, Rules, Sla, load_rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHANNELS = ("ads", "email", "organic", "social")
TYPES = (
    "touch.page_viewed",
    "touch.ad_clicked",
    "touch.call_logged",
    "touch.meeting_booked",
    "touch.email_sent",
    "touch.email_opened",
    "touch.email_clicked",
    "touch.email_bounced",
    "touch.unsubscribed",
)
MILESTONES = (
    "lead.captured",
    "owner.assigned",
    "sales.accepted",
    "sales.rejected",
    "sales.disqualified",
    "deal.lost",
)
BASE = load_rules()
#: hours since T0, coarse so that touches, moves, milestones and window edges often tie
MOMENTS = st.integers(0, 60).map(lambda k: k * 50)


def _at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


@st.composite
def journeys(draw: st.DrawFn) -> list[Journey]:
    out = []
    seq = 0
    for n in range(draw(st.integers(0, 12))):
        j = Journey(f"k{n:03d}")
        for _ in range(draw(st.integers(0, 6))):
            seq += 1
            channel = draw(st.sampled_from(CHANNELS))
            j.touches.append(
                Touchpoint(
                    _at(draw(MOMENTS)),
                    seq,
                    draw(st.sampled_from(TYPES)),
                    channel,
                    draw(st.sampled_from((None, f"{channel}-a", f"{channel}-b"))),
                    draw(st.sampled_from((None, "x"))),
                )
            )
        stage, hour = "anonymous", draw(st.integers(0, 30)) * 50
        for _ in range(draw(st.integers(0, 6))):
            hour += draw(st.integers(0, 6)) * 50
            to = draw(st.sampled_from(STAGES[1:]))
            j.moves.append(Move(_at(hour), stage, to, "test"))
            stage = to
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(MILESTONES))
            reason = draw(st.sampled_from((None, "budget", "timing")))
            j.milestones.append(
                Milestone(
                    _at(draw(MOMENTS)),
                    kind,
                    draw(st.sampled_from((None, "r1"))),
                    reason,
                )
            )
        if stage == "customer" or draw(st.booleans()):
            for _ in range(draw(st.integers(0, 2))):
                amount = Decimal(draw(st.integers(0, 10**7))).scaleb(-2)
                currency = draw(st.sampled_from(("USD", "USD", "EUR", "JPY", None)))
                at = _at(draw(MOMENTS))
                j.milestones.append(Milestone(at, "deal.won", None, None, amount, currency))
        j.routed = [_at(draw(MOMENTS)) for _ in range(draw(st.integers(0, 2)))]
        if draw(st.integers(0, 4)) == 0:
            j.stage_now = draw(st.sampled_from(STAGES))
        j.sort()
        out.append(j)
    return out


costs = st.lists(
    st.builds(
        lambda ch, camp, cents, cur, day, span: Cost(
            f"{ch}-{camp}",
            ch,
            Decimal(cents).scaleb(-2),
            cur,
            date(2026, 1, 1) + timedelta(days=day),
            date(2026, 1, 1) + timedelta(days=day + span),
        ),
        st.sampled_from(CHANNELS),
        st.sampled_from(("a", "b")),
        st.integers(0, 10**6),
        st.sampled_from(("USD", "EUR", "GBP")),
        st.integers(-30, 150),
        st.integers(0, 60),
    ),
    max_size=6,
)


def _rules(draw: st.DrawFn) -> Rules:
    cfg = Attribution(
        conversion=draw(st.sampled_from(("mql", "sql", "customer"))),
        lookback_days=draw(st.sampled_from((None, 5.0, 40.0))),
        shapley_exact_max_channels=draw(st.sampled_from((2, 12))),
        shapley_samples=30,
    )
    rates = (Rate.model_validate({"from": "EUR", "to": "USD", "since": date(2025, 1, 1),
                                  "rate": Decimal("1.1")}),)  # fmt: skip
    sla = draw(st.sampled_from((None, Sla(), Sla(first_touch_types=("touch.meeting_booked",)))))
    return BASE.model_copy(update={"attribution": cfg, "money": Money(rates=rates), "sla": sla})


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "journeys": draw(journeys()),
        "costs": draw(costs),
        "rules": _rules(draw),
        "window": Window(
            draw(st.sampled_from((None, _at(200), _at(900)))),
            draw(st.sampled_from((None, _at(1500), _at(4000)))),
        ),
        "kw": {
            "period": draw(st.sampled_from(("month", "week"))),
            "by": draw(st.sampled_from(("channel", "campaign"))),
            "model": draw(st.sampled_from(("linear", "first_touch", "markov", "shapley"))),
            "currency": draw(st.sampled_from((None, "USD", "JPY"))),
        },
    }


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_streamed_kpis_equal_the_in_memory_report(case: dict[str, Any]) -> None:
    js, rules, window, kw = case["journeys"], case["rules"], case["window"], case["kw"]
    expected = report.kpis(Dataset(js, case["costs"]), rules, window, **kw)
    got = report.kpis_of(iter(js), case["costs"], rules, window, **kw)
    assert list(got) == list(expected)  # the same sections, in the same order
    for section in expected:
        assert got[section] == expected[section], section


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_streamed_page_equals_the_in_memory_page(case: dict[str, Any]) -> None:
    js, rules, window, kw = case["journeys"], case["rules"], case["window"], case["kw"]
    ds = Dataset(js, case["costs"])
    expected = report.kpis(ds, rules, window, **kw)
    results = report.attribution(ds, rules, window, by=kw["by"], currency=kw["currency"])
    expected["attribution"] = report.attribution_document(results, window, rules)
    got = report.page_document_of(iter(js), case["costs"], rules, window, **kw)
    assert got == expected


def test_a_wrong_model_or_currency_is_named() -> None:
    with pytest.raises(ReportError, match="unknown attribution model 'nope'"):
        report.kpis_of([], [], BASE, Window(), model="nope")
    with pytest.raises(ReportError, match="--currency 'usd'"):
        report.kpis_of([], [], BASE, Window(), currency="usd")
