"""Stage moments follow when facts happened, not the order they arrived in (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.aggregates.lead import Lead
from engine.analytics import funnel
from engine.analytics.attribution import attribute
from engine.analytics.paths import build_paths
from engine.application import LeadEngine
from engine.contract import Envelope
from engine.rules import Rules
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
