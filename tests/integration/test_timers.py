"""SLA timers that fire (engine/services/timers.py) on a real PostgreSQL, with a short allowance
in an always-open business-hours window: alerts are recorded within a second of their moment, once,
and a first touch that arrives late but dated in time closes its timer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from engine.aggregates.lead import Lead
from engine.domain.contract import Envelope
from engine.domain.rules import BusinessHours, Rules, Sla
from engine.postgres import db as dbmod
from engine.postgres import outbox
from engine.postgres.verify import verify
from engine.runtime import open_runtime
from engine.services.timers import TimerService
from engine.settings import Settings
from tests.factory import ev
from tests.kafka_helpers import wait_for

ALWAYS = BusinessHours(
    timezone="Europe/Lisbon",
    start_hour=0,
    end_hour=24,
    days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
)
SLA = Sla(first_touch_hours=0.0008, decision_hours=0.0016, at_risk_after=0.5, business_hours=ALWAYS)


def journey(key: str, at: datetime) -> list[Envelope]:
    """A lead that becomes MQL (and is routed) at `at`."""
    data = {"email": f"{key}@acme.example", "country": "US"}
    profile = {"industry": "software", "employees": 5000, "seniority": "vp"}
    out = [ev("lead.captured", key, data, at=at), ev("lead.profile_updated", key, profile, at=at)]
    for kind in ("touch.form_submitted", "touch.webinar_attended", "touch.content_downloaded"):
        out.append(ev(kind, key, {"channel": "web"}, at=at))
    return out


def test_alerts_fire_on_time_once_and_a_late_first_touch_closes_its_timer(
    settings: Settings, database: dbmod.Database, rules: Rules
) -> None:
    quick = rules.model_copy(update={"sla": SLA})
    with open_runtime(settings, rules=quick, database=database) as rt:
        now = datetime.now(UTC)
        rt.app.ingest(journey("late-touch", now) + journey("silent", now))
        routed = {k: rt.app.get_lead(k) for k in ("late-touch", "silent")}
        assert all(lead.routings for lead in routed.values()), "both leads routed at once"
        stop = threading.Event()
        service = TimerService(rt.app, SLA)
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        try:

            def events(key: str) -> list[Any]:
                return [e for e in rt.app.lead_events(key) if isinstance(e, Lead.SlaAlerted)]

            wait_for(lambda: len(events("late-touch")) >= 1, timeout=10, every=0.05)
            # the first touch, dated before its due moment, arrives after the at-risk alert
            touch_at = now + timedelta(hours=SLA.first_touch_hours * 0.9)
            call = {"rep": "ana.ramos", "channel": "phone", "direction": "outbound",
                    "outcome": "connected"}  # fmt: skip
            rt.app.ingest([ev("touch.call_logged", "late-touch", call, at=touch_at)])
            wait_for(lambda: len(events("silent")) == 4, timeout=15, every=0.05)
            wait_for(lambda: len(events("late-touch")) == 3, timeout=15, every=0.05)
        finally:
            stop.set()
            thread.join(10)
        for key in ("silent", "late-touch"):
            for alert in events(key):
                late = (alert.timestamp - alert.at).total_seconds()
                assert 0 <= late < 1.0, (key, alert.timer, alert.status, late)
        fired = {(a.timer, a.status) for a in events("silent")}
        every = {(t, s) for t in ("first_touch", "decision") for s in ("at_risk", "breached")}
        assert fired == every
        closed = [(a.timer, a.status) for a in events("late-touch")]
        assert ("first_touch", "breached") not in closed  # the touch was in time: closed
        assert sorted(closed) == [("decision", "at_risk"), ("decision", "breached"),
                                  ("first_touch", "at_risk")]  # fmt: skip
        assert len(events("silent")) == len(set(fired))  # each once
        service.scan()
        assert service.fire() == 0  # nothing left to fire: timers closed or recorded
        assert verify(rt.db).ok  # the alerts are chained like every other event


def test_a_restart_finds_the_routed_leads_without_the_log_and_fires_each_alert_once(
    settings: Settings, database: dbmod.Database, rules: Rules
) -> None:
    """Down while the moments passed: at start the service schedules the routed leads from
    the outbox (and, below `outbox_start`, the log's Routed events only), follows the log from
    its head, records every alert that passed at once, each once; a second start records none."""
    quick = rules.model_copy(update={"sla": SLA})
    with open_runtime(settings, rules=quick, database=database) as rt:
        now = datetime.now(UTC) - timedelta(minutes=10)  # every moment has passed
        rt.app.ingest(journey("before-outbox", now))
        with rt.db.connect() as conn:  # as if recorded before migration 15
            conn.execute(
                sql.SQL("UPDATE {} SET complete_from = %s").format(
                    sql.Identifier(rt.db.schema, outbox.START_TABLE)
                ),
                ((rt.app.recorder.max_notification_id() or 0) + 1,),
            )
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(rt.db.schema, "outbox")))
        rt.app.ingest(journey("silent", now) + journey("touched", now))
        call = {"rep": "ana.ramos", "channel": "phone", "direction": "outbound",
                "outcome": "connected"}  # fmt: skip
        rt.app.ingest([ev("touch.call_logged", "touched", call, at=now + timedelta(seconds=1))])
        head = rt.app.recorder.max_notification_id()
        service = TimerService(rt.app, SLA)
        service.resume()
        assert service.position == head  # no event below the head was decoded
        assert service.routed == {rt.app.lead_id(k) for k in ("before-outbox", "silent", "touched")}
        assert service.fire() == 4 + 4 + 2  # touched: only its decision timer was open

        def alerts(key: str) -> list[tuple[str, str]]:
            return sorted(
                (e.timer, e.status)
                for e in rt.app.lead_events(key)
                if isinstance(e, Lead.SlaAlerted)
            )

        every = [(t, s) for t in ("decision", "first_touch") for s in ("at_risk", "breached")]
        assert alerts("silent") == alerts("before-outbox") == every
        assert alerts("touched") == [("decision", "at_risk"), ("decision", "breached")]
        again = TimerService(rt.app, SLA)
        stop = threading.Event()
        stop.set()  # one pass: resume, then stop
        again.run(stop)
        again.resume()
        assert again.fire() == 0 and again.recorded == 0  # each alert once, across restarts
