"""Stage moments follow when facts happened, not the order they arrived in (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.aggregates.lead import Lead
from engine.analytics import funnel
from engine.analytics.attribution import attribute
from engine.analytics.paths import build_paths
from engine.domain.contract import Envelope
from engine.domain.rules import MqlRule, Rules
from engine.services.application import LeadEngine
from tests.factory import ev
from tests.timeline import dataset_of

MARCH = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def upsell_story() -> list[Envelope]:
    """The issue's five events, in the order they happened."""
    return [
        ev("lead.captured", "ann", {"email": "ann@acme.example"}, at=MARCH, id="cap"),
        ev("touch.ad_clicked", "ann", {"channel": "paid_search"}, at=MARCH, days=4, id="ad"),
        ev("deal.won", "ann", {"amount": 100, "currency": "EUR"}, at=MARCH, days=9, id="won"),
        ev("touch.page_viewed", "ann", {"channel": "organic"}, at=MARCH, days=14, id="view"),
        ev("deal.won", "ann", {"amount": 50, "currency": "EUR"}, at=MARCH, days=19, id="upsell"),
    ]


def late_first_win() -> list[Envelope]:
    """The upsell dated 03-20 arrives before the first win dated 03-10."""
    cap, ad, won, view, upsell = upsell_story()
    return [cap, ad, view, upsell, won]


def test_a_late_first_win_moves_the_customer_moment_back(rules: Rules) -> None:
    app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.ingest(late_first_win())
    lead = app.get_lead("ann")
    assert lead.stage == "customer"
    assert lead.reached["customer"] == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    retracted = [e for e in app.lead_events("ann") if isinstance(e, Lead.StageRetracted)]
    assert [e.to_stage for e in retracted] == ["customer"]  # the 03-20 move, taken back
    ds = dataset_of(app, ["ann"])
    [journey] = ds.journeys
    assert journey.reached_at("customer") == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    cycle = funnel.sales_cycle(ds)
    assert cycle["customers"] == 1 and cycle["average_days"] == 9.0
    cfg = rules.attribution
    last = attribute(build_paths(ds, cfg), "last_touch", "channel", cfg)
    assert {k: float(v) for k, v in last.credits.items() if v} == {"paid_search": 1.0}
    to_15th = build_paths(ds, cfg, end=datetime(2026, 3, 15, tzinfo=UTC))
    assert len(to_15th.converting) == 1
    app.close()


def test_the_late_order_reports_what_the_sorted_order_reports(rules: Rules) -> None:
    reports = []
    for order in (upsell_story(), late_first_win()):
        app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        app.ingest(order)
        ds = dataset_of(app, ["ann"])
        [j] = ds.journeys
        reports.append(
            (
                [(m.at, m.from_stage, m.to_stage) for m in j.moves],
                funnel.sales_cycle(ds),
                funnel.snapshot(ds),
                app.get_lead("ann").reached,
            )
        )
        app.close()
    assert reports[0] == reports[1]


def path_of(app: LeadEngine, key: str) -> list[tuple[datetime, str, str]]:
    return [(s.at, s.from_stage, s.to_stage) for _v, s in app.get_lead(key).path]


def test_facts_of_the_same_instant_walk_in_funnel_order_whatever_their_arrival(
    rules: Rules,
) -> None:
    """Ties in event time are broken by the funnel (capture first, closes last), then by
    (source, id): never by arrival."""
    cap = ev("lead.captured", "bo", {"email": "bo@acme.example"}, at=MARCH, id="c")
    acc = ev("sales.accepted", "bo", {"rep": "ann"}, at=MARCH, days=1, id="z-accepted")
    qual = ev("sales.qualified", "bo", {"rep": "ann"}, at=MARCH, days=1, id="a-qualified")
    lost = ev("deal.lost", "bo", {"reason": "price"}, at=MARCH, days=2, id="l")
    opened = ev("opportunity.opened", "bo", {"amount": 5, "currency": "EUR"}, at=MARCH, days=2)
    paths = []
    for order in ([cap, acc, qual, opened, lost], [lost, qual, opened, acc, cap]):
        app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        app.ingest(order)
        paths.append(path_of(app, "bo"))
        assert app.get_lead("bo").stage == "lost"
        app.close()
    assert paths[0] == paths[1]
    assert [to for _at, _from, to in paths[0]] == ["lead", "sal", "sql", "opportunity", "lost"]


def test_mql_is_a_decision_taken_on_arrival_so_it_may_differ_with_arrival_order(
    rules: Rules,
) -> None:
    """A form fill dated 03-03 makes the lead MQL when it arrives while the lead is a `lead`;
    if sales.accepted (03-05) arrived first, the lead is past mql when the form fill comes, so
    no MQL decision is taken (and no routing): the mql moment is then the skip at 03-05. Every
    fact-driven moment is the same either way."""
    eager = rules.model_copy(update={"mql": MqlRule(total_at_least=5)})
    cap = ev("lead.captured", "cy", {"email": "cy@acme.example"}, at=MARCH, id="cap")
    form = ev("touch.form_submitted", "cy", {"channel": "web"}, at=MARCH, days=2, id="form")
    accepted = ev("sales.accepted", "cy", {"rep": "ann"}, at=MARCH, days=4, id="acc")
    leads = []
    for order in ([cap, form, accepted], [cap, accepted, form]):
        app = LeadEngine(rules=eager, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        app.ingest(order)
        leads.append(app.get_lead("cy"))
        app.close()
    in_order, late_form = leads
    assert in_order.mql_rounds == 1 and late_form.mql_rounds == 0
    assert in_order.reached["mql"] == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # the form fill
    assert "mql" not in late_form.reached  # reached only through the skip to sal
    assert len(in_order.routings) == 1 and late_form.routings == []
    for stage in ("lead", "sal"):
        assert in_order.reached[stage] == late_form.reached[stage]
    assert in_order.stage == late_form.stage == "sal"


def test_a_late_capture_moves_the_lead_moment_and_the_path(rules: Rules) -> None:
    """sales.accepted arrives first (the lead jumps from anonymous to sal), then the capture
    dated two days before it: the path becomes lead, then sal, as it happened."""
    cap = ev("lead.captured", "di", {"email": "di@acme.example"}, at=MARCH, id="cap")
    accepted = ev("sales.accepted", "di", {"rep": "ann"}, at=MARCH, days=2, id="acc")
    app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.ingest([accepted])
    assert path_of(app, "di") == [(datetime(2026, 3, 3, 9, 0, tzinfo=UTC), "anonymous", "sal")]
    app.ingest([cap])
    assert path_of(app, "di") == [
        (MARCH, "anonymous", "lead"),
        (datetime(2026, 3, 3, 9, 0, tzinfo=UTC), "lead", "sal"),
    ]
    [j] = dataset_of(app, ["di"]).journeys
    assert [(m.at, m.to_stage) for m in j.moves] == [(at, to) for at, _f, to in path_of(app, "di")]
    app.close()


def test_mql_and_routing_are_dated_at_their_late_trigger(rules: Rules) -> None:
    """A form fill dated 03-03 arrives after a page view dated 03-10: the MQL decision it
    triggers, and the routing that follows, are dated 03-03 (the trigger's time), not at the
    lead's latest fact."""
    eager = rules.model_copy(update={"mql": MqlRule(total_at_least=5)})
    cap = ev("lead.captured", "ed", {"email": "ed@acme.example"}, at=MARCH, id="cap")
    view = ev("touch.page_viewed", "ed", {"channel": "web"}, at=MARCH, days=9, id="view")
    form = ev("touch.form_submitted", "ed", {"channel": "web"}, at=MARCH, days=2, id="form")
    app = LeadEngine(rules=eager, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.ingest([cap, view, form])
    lead = app.get_lead("ed")
    third = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert lead.mql_rounds == 1 and lead.reached["mql"] == third
    assert [at for at, _owner, _queue in lead.routings] == [third]
    app.close()


def test_lead_history_shows_the_retracted_move(rules: Rules) -> None:
    from engine.services.history import history_rows

    app = LeadEngine(rules=rules, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.ingest(late_first_win())
    shown = [r["event"] for r in history_rows(app.lead_events("ann"), rules)]
    app.close()
    assert shown.count("-> customer") == 2
    assert "-/-> customer (retracted)" in shown
    assert shown.index("-/-> customer (retracted)") < len(shown) - 1  # then the 03-10 move


def test_a_late_trigger_that_fell_past_mql_takes_no_decision(rules: Rules) -> None:
    """Rejected on 03-10 (recycled, so qualifiable now), a form fill dated 03-04 arrives: on
    the walk it falls while the lead was `sal` (accepted 03-03), past mql: no MQL decision, no
    routing, nothing to take back."""
    eager = rules.model_copy(update={"mql": MqlRule(total_at_least=5)})
    app = LeadEngine(rules=eager, env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    app.ingest(
        [
            ev("lead.captured", "fa", {"email": "fa@acme.example"}, at=MARCH, id="cap"),
            ev("sales.accepted", "fa", {"rep": "ann"}, at=MARCH, days=2, id="acc"),
            ev("sales.rejected", "fa", {"reason": "no"}, at=MARCH, days=9, id="rej"),
            ev("touch.form_submitted", "fa", {"channel": "web"}, at=MARCH, days=3, id="form"),
        ]
    )
    lead = app.get_lead("fa")
    stream = app.lead_events("fa")
    app.close()
    assert lead.stage == "recycled" and lead.mql_rounds == 0 and lead.routings == []
    assert not any(isinstance(e, Lead.StageRetracted) for e in stream)
