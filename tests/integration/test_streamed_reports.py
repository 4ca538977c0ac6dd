"""Journeys streamed from PostgreSQL lead by lead (`load.stream`) are `load`'s journeys, in
the same order, people of several leads included; streamed attribution gives the in-memory
report's credits to the last digit, on every clock."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from engine.analytics import funnel, pathread, report
from engine.analytics.accounts import account_keys, by_account
from engine.analytics.attribution import MODELS
from engine.analytics.journeys import Journey
from engine.analytics.load import load, person_keys, stream
from engine.analytics.report import Window
from engine.cli.html import page
from engine.cli.output import to_json
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime
from tests.factory import T0, captured, ev, touch


@pytest.fixture
def stitched(runtime: Runtime) -> Runtime:
    events = generate(50, seed=5, identity=0.4)
    runtime.app.ingest([validate_event(e) for e in events])
    runtime.projector.run()
    return runtime


def _canonical(j: Journey) -> tuple[Any, ...]:
    """A journey's rows; moves and milestones at the same moment from two leads of one person
    in a fixed order (`load` keeps them in the order its queries happened to return them)."""
    return (
        j.key,
        j.touches,
        sorted(j.moves, key=repr),
        sorted(j.milestones, key=repr),
        sorted(j.routed),
        j.stage_now,
    )


def _middle(runtime: Runtime, column: str) -> datetime:
    with runtime.db.connect() as conn:
        row = conn.execute(
            f"SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY {column}) "
            f'FROM "{runtime.db.schema}".lead_touchpoints'
        ).fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment


def test_streamed_journeys_are_loads(stitched: Runtime) -> None:
    db = stitched.db
    people = person_keys(db)
    assert len(set(people.values())) < len(people)  # some people have several leads
    loaded = load(db).journeys
    streamed = list(stream(db, itersize=7))
    assert [j.key for j in streamed] == [j.key for j in loaded] == sorted(j.key for j in loaded)
    assert [_canonical(j) for j in streamed] == [_canonical(j) for j in loaded]
    merged = [j for j in streamed if j.stage_now is not None]
    assert merged and all(len({t.seq for t in j.touches}) == len(j.touches) for j in merged)
    for cut in ("recorded_at", "occurred_at"):
        moment = _middle(stitched, cut)
        kw: dict[str, Any] = {"as_of" if cut == "recorded_at" else "occurred_by": moment}
        as_of = kw.pop("as_of", None)
        part = load(db, as_of, **kw).journeys
        assert [_canonical(j) for j in stream(db, as_of, **kw)] == [_canonical(j) for j in part]
        assert sum(len(j.touches) for j in part) < sum(len(j.touches) for j in loaded)


def test_streamed_attribution_equals_the_report(stitched: Runtime) -> None:
    """`report attribution` (paths read by `pathread`: one query, arrays per person) gives
    the in-memory report's credits on every clock and window, with a lookback, by every
    grouping, for both values and two conversion stages."""
    db = stitched.db
    lookback = stitched.rules.attribution.model_copy(update={"lookback_days": 20.0})
    for rules in (stitched.rules, stitched.rules.model_copy(update={"attribution": lookback})):
        for value, conversion in (("conversions", "sql"), ("revenue", "sql"), ("revenue", None)):
            for window in _windows(stitched):
                streamed = report.attribution_streamed(
                    db, rules, window, bys=("channel", "campaign", "content"), value=value,
                    conversion=conversion,
                )  # fmt: skip
                ds = load(db, window.as_of, occurred_by=window.occurred_by)
                for by in ("channel", "campaign", "content"):
                    expected = report.attribution(
                        ds, rules, window, by=by, value=value, conversion=conversion
                    )
                    assert [r.model for r in streamed[by]] == list(MODELS)
                    assert streamed[by] == expected, (window, value, conversion, by)
                    assert expected[0].conversions > 0
                one = report.attribution_streamed(db, rules, window, bys=("campaign",))
                assert one["campaign"] == report.attribution(ds, rules, window, by="campaign")


def _windows(runtime: Runtime) -> list[Window]:
    middle = _middle(runtime, "occurred_at")
    return [
        Window(),
        Window(occurred_by=middle),
        Window(as_of=_middle(runtime, "recorded_at")),
        Window(start=middle - timedelta(days=30), end=middle + timedelta(days=20)),
    ]


def test_streamed_kpis_and_page_equal_the_report(stitched: Runtime) -> None:
    """`report kpis` and `report html` (now streamed) print what the in-memory reports did:
    the same document, the same page to the byte (its generation time aside)."""
    db, rules = stitched.db, stitched.rules
    for window in _windows(stitched):
        ds = load(db, window.as_of, occurred_by=window.occurred_by)
        for kw in ({}, {"by": "campaign", "model": "shapley", "period": "week"}):
            expected = report.kpis(ds, rules, window, **kw)
            assert expected["leads"] > 0 and expected["funnel"][0]["reached"] > 0
            got = report.kpis_streamed(db, rules, window, **kw)
            assert to_json(got) == to_json(expected), (window, kw)
        expected = report.kpis(ds, rules, window)
        results = report.attribution(ds, rules, window)
        expected["attribution"] = report.attribution_document(results, window, rules)
        got = report.page_document_streamed(db, rules, window)
        assert got == expected
        assert _undated(page(got)) == _undated(page(expected))


def test_streamed_funnel_equals_the_snapshot(stitched: Runtime) -> None:
    """`report funnel` with a window or a clock (now one query, arrays per person:
    `kpiread.feed_funnel`) gives the snapshot of the loaded journeys, people of several leads
    standing where their furthest lead stands."""
    db = stitched.db
    assert person_keys(db), "the data must hold people of several leads"
    for window in _windows(stitched):
        ds = load(db, window.as_of, occurred_by=window.occurred_by)
        for start, end in ((window.start, window.end), (None, window.end), (window.start, None)):
            expected = funnel.snapshot(ds, start, end)
            got = report.funnel_streamed(db, Window(start, end, window.as_of, window.occurred_by))
            assert got == expected, (window, start, end)


def test_a_person_s_leads_in_the_order_stream_meets_them(runtime: Runtime) -> None:
    """Two leads of one person move at the same moment (b to `lead`, a to `sql`): the merged
    moves keep `load.stream`'s order of the leads (b first: it has touches, a only moves),
    which decides the stays the KPIs measure; and the person stands where a, its furthest
    lead, stands (sql), not where its last move went (b to nurture)."""
    events = [
        captured("a", days=-1),
        touch("touch.page_viewed", "b", channel="paid", days=0.5),
        ev("identity.linked", "b", {"to": "a", "reason": "cookie"}, days=0.6),
        captured("b", days=1),
        ev("sales.qualified", "a", days=1),
        ev("lead.nurture_enrolled", "b", days=2),
        captured("c", days=1),
    ]
    runtime.app.ingest(events)
    runtime.projector.run()
    db, rules = runtime.db, runtime.rules
    assert person_keys(db) == {"a": "a", "b": "a"}
    snapshot = report.funnel_streamed(db, Window(start=T0 - timedelta(days=5)))
    assert snapshot == funnel.snapshot(load(db), T0 - timedelta(days=5), None)
    assert {r["stage"]: r["now"] for r in snapshot["stages"]}["sql"] == 1
    assert snapshot["exits_now"]["nurture"] == 0
    got = report.kpis_streamed(db, rules, Window())
    assert to_json(got) == to_json(report.kpis_of(stream(db), [], rules, Window()))
    assert to_json(got) == to_json(report.kpis(load(db), rules, Window()))
    stays = {r["stage"]: r["stays"] for r in got["funnel"]}
    assert stays["lead"] == 2 and stays["sql"] == 1  # lead(a), lead(b), sql(a), nurture(b)
    assert got["funnel"][0]["median_days"] == 1.0  # lead stays of 2 days and 0 days


def _undated(html: str) -> str:
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated", html)


def test_streamed_account_attribution_equals_by_account(stitched: Runtime) -> None:
    """`report attribution --by-account` (now streamed account by account) gives the credits,
    the account count and the leads left out of `by_account` over the loaded dataset."""
    db, rules = stitched.db, stitched.rules
    for window in _windows(stitched):
        merged = by_account(
            load(db, window.as_of, occurred_by=window.occurred_by), account_keys(db)
        )
        assert merged.dataset.journeys and merged.left_out > 0
        for value in ("conversions", "revenue"):
            got = report.attribution_by_account_streamed(db, rules, window, value=value)
            expected = report.attribution(merged.dataset, rules, window, value=value)
            assert got.results == expected, (window, value)
            assert (got.accounts, got.left_out) == (len(merged.dataset.journeys), merged.left_out)


def test_path_edges_read_as_the_journeys_cut_them(runtime: Runtime) -> None:
    """The edges `pathread` cuts in SQL and by bisection: a touch at the conversion's very
    moment is on the path, one after it is not; an excluded type is left out; an empty
    campaign is `(none)`; a conversion at the window's end is not in it (its touches in the
    window make a path that did not convert); a lead with moves and no touch converts to
    `(no touchpoint)`."""
    won = {"amount": "100.00", "currency": "USD"}
    events = [
        captured("a"),
        touch("touch.page_viewed", "a", channel="paid", campaign="", days=1),
        touch("touch.email_sent", "a", channel="email", days=2),
        touch("touch.ad_clicked", "a", channel="social", campaign="s1", days=3),
        ev("deal.won", "a", won, days=3),
        touch("touch.page_viewed", "a", channel="late", days=10),
        touch("touch.page_viewed", "b", channel="paid", days=1),
        captured("c", days=1),
        ev("deal.won", "c", won, days=2),
        touch("touch.page_viewed", "d", channel="paid", days=1),
        touch("touch.page_viewed", "d", channel="social", days=1.5),
        ev("deal.won", "d", won, days=2),
        touch("touch.page_viewed", "e", channel="social", days=1),
        ev("deal.won", "e", won, days=2),
    ]
    runtime.app.ingest(events)
    runtime.projector.run()
    db, rules = runtime.db, runtime.rules
    ds = load(db)
    conversion_day = T0 + timedelta(days=3)
    for window in (Window(), Window(end=conversion_day), Window(start=conversion_day)):
        for value in ("conversions", "revenue"):
            got = report.attribution_streamed(
                db, rules, window, bys=("channel", "campaign"), value=value
            )
            for by in ("channel", "campaign"):
                assert got[by] == report.attribution(ds, rules, window, by=by, value=value)
    everything = report.attribution_streamed(db, rules, Window(), bys=("channel", "campaign"))
    last = {r.model: r for r in everything["channel"]}["last_touch"]
    one, nothing = Decimal("1.0000"), Decimal("0.0000")
    assert last.credits == {"social": 3 * one, "paid": nothing, "(no touchpoint)": one}
    # before day 3, a and b had not converted; a's path is paid (day 1) alone: its social touch
    # at the window's end is not on it (on it, Markov would give paid 0.8 and social 1.2)
    before = report.attribution_streamed(db, rules, Window(end=conversion_day), model="markov")
    assert before["channel"][0].credits == {
        "paid": Decimal("0.6667"),
        "social": Decimal("1.3333"),
        "(no touchpoint)": one,
    }
    linear = {r.model: r for r in everything["campaign"]}["linear"]
    assert set(linear.credits) == {"(none)", "s1", "(no touchpoint)"}


@pytest.mark.parametrize("ordered", [True, False])
def test_paths_read_with_or_without_ordered_aggregates(stitched: Runtime, ordered: bool) -> None:
    """Both forms of `pathread.query` (ordered aggregates, for PostgreSQL 16 and later; the
    sorted subquery alone, for 15) give the in-memory report's credits, on whichever server
    runs the tests."""
    db, rules = stitched.db, stitched.rules
    for window in _windows(stitched):
        for value in ("conversions", "revenue"):
            feed = report.AttributionFeed(rules, window, bys=("channel",), value=value)
            pathread.feed(
                db, feed.builder, feed.tally, window.as_of, occurred_by=window.occurred_by,
                ordered=ordered,
            )  # fmt: skip
            ds = load(db, window.as_of, occurred_by=window.occurred_by)
            assert feed.results()["channel"] == report.attribution(ds, rules, window, value=value)
