"""Streamed attribution (`report.attribution_of`: journeys one at a time into per-key sums)
gives exactly the credits of the in-memory report (`report.attribution` over a Dataset), for
random journeys, windows, lookbacks, conversion stages, values and currencies."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.analytics import report
from engine.analytics.attribution import BY, MODELS
from engine.analytics.journeys import Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import ReportError
from engine.analytics.report import Window
from engine.domain.rules import Attribution, Money, Rate, Rules, load_rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHANNELS = ("ads", "email", "organic", "social", "events")
TYPES = ("touch.page_viewed", "touch.ad_clicked", "touch.email_sent", "touch.form_submitted")
STAGES = ("lead", "mql", "sql", "opportunity", "customer")
BASE = load_rules()


def _at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


@st.composite
def journeys(draw: st.DrawFn) -> list[Journey]:
    out = []
    seq = 0
    for n in range(draw(st.integers(0, 14))):
        j = Journey(f"k{n:03d}")
        for _ in range(draw(st.integers(0, 6))):
            seq += 1
            channel = draw(st.sampled_from(CHANNELS))
            campaign = draw(st.sampled_from((None, f"{channel}-a", f"{channel}-b")))
            content = draw(st.sampled_from((None, "x", "y")))
            j.touches.append(
                Touchpoint(
                    _at(draw(st.integers(0, 2000))),
                    seq,
                    draw(st.sampled_from(TYPES)),
                    channel,
                    campaign,
                    content,
                )
            )
        stage, hour = "anonymous", draw(st.integers(0, 1000))
        if draw(st.booleans()):
            j.milestones.append(Milestone(_at(hour), "lead.captured"))
        for to in STAGES[: draw(st.integers(0, len(STAGES)))]:
            hour += draw(st.integers(0, 400))
            j.moves.append(Move(_at(hour), stage, to, "test"))
            stage = to
        if stage == "customer":
            for _ in range(draw(st.integers(1, 2))):
                cents = draw(st.integers(0, 10**7))
                currency = draw(st.sampled_from(("USD", "USD", "EUR", "JPY", None)))
                amount = Decimal(cents).scaleb(-2)
                j.milestones.append(Milestone(_at(hour), "deal.won", None, None, amount, currency))
        j.sort()
        out.append(j)
    return out


def _rules(draw: st.DrawFn) -> Rules:
    cfg = Attribution(
        conversion=draw(st.sampled_from(("mql", "sql", "opportunity", "customer"))),
        lookback_days=draw(st.sampled_from((None, 5.0, 40.0))),
        time_decay_half_life_days=draw(st.sampled_from((1.0, 7.0))),
        # small enough that paths of several channels take the sampled Shapley values too
        shapley_exact_max_channels=draw(st.sampled_from((2, 12))),
        shapley_samples=50,
    )
    rates = (Rate.model_validate({"from": "EUR", "to": "USD", "since": date(2025, 1, 1),
                                  "rate": Decimal("1.1")}),)  # fmt: skip
    return BASE.model_copy(update={"attribution": cfg, "money": Money(rates=rates)})


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.sampled_from((None, _at(200), _at(800))))
    end = draw(st.sampled_from((None, _at(1200), _at(3000))))
    return {
        "journeys": draw(journeys()),
        "rules": _rules(draw),
        "window": Window(start, end),
        "value": draw(st.sampled_from(("conversions", "revenue"))),
        "conversion": draw(st.sampled_from((None, "sql", "customer"))),
        "currency": draw(st.sampled_from((None, "USD", "JPY"))),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_streamed_credits_equal_the_in_memory_report(case: dict[str, Any]) -> None:
    js, rules, window = case["journeys"], case["rules"], case["window"]
    kw = {k: case[k] for k in ("value", "conversion", "currency")}
    streamed = report.attribution_of(iter(js), rules, window, bys=BY, **kw)
    for by in BY:
        expected = report.attribution(Dataset(js, []), rules, window, by=by, **kw)
        assert [r.model for r in streamed[by]] == list(MODELS)
        for got, want in zip(streamed[by], expected, strict=True):
            assert got == want, (got.model, by)
            assert sum(got.credits.values(), got.zero) == got.total


def test_one_model_and_a_wrong_name() -> None:
    js = [
        Journey(
            "a", [Touchpoint(T0, 1, "touch.page_viewed", "ads")], [Move(T0, "x", "customer", "t")]
        )
    ]
    [only] = report.attribution_of(js, BASE, Window(), model="markov")["channel"]
    assert only.model == "markov" and only.credits == {"ads": Decimal("1.0000")}
    with pytest.raises(ReportError, match="unknown attribution model 'nope'"):
        report.attribution_of(js, BASE, Window(), model="nope")
    with pytest.raises(ReportError, match="cannot attribute by 'color'"):
        report.attribution_of(js, BASE, Window(), bys=("color",))
