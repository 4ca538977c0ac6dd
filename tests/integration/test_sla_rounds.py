"""SLA per routing round (`<schema>_read.lead_sla_rounds`): a lead routed twice has two rounds,
each with its own first sales touch, decision, deadlines and state; the latest round is
`lead_sla`'s row and its states are the domain's (engine/domain/sla.py) at the same moment;
`projections rebuild leads` makes exactly the rows the projector made batch by batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.rows import dict_row

from engine.domain.generator import generate
from engine.readmodel import read_schema
from engine.runtime import Runtime
from engine.stitching.person import person_sla
from tests.factory import raw
from tests.integration.conftest import reader_login

MON = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, inside the shipped business hours
TUE = MON + timedelta(days=1)
KEY = "two-rounds"


def _two_rounds() -> list[dict[str, Any]]:
    """MQL and routed Monday 10:00; called 11:00, rejected 12:00 (recycled); engaged again
    Tuesday 10:00, MQL and routed again; nothing since."""
    call = {"rep": "ana.ramos", "channel": "sales", "direction": "outbound",
            "outcome": "connected"}  # fmt: skip
    profile = {"industry": "software", "employees": 5000, "seniority": "vp"}
    out = [
        raw("lead.captured", KEY, {"email": "two@acme.example", "country": "US"}, at=MON),
        raw("lead.profile_updated", KEY, profile, at=MON),
    ]
    for kind in ("touch.form_submitted", "touch.webinar_attended", "touch.content_downloaded"):
        out.append(raw(kind, KEY, {"channel": "webinar"}, at=MON))
    out.append(raw("touch.call_logged", KEY, call, at=MON + timedelta(hours=1)))
    out.append(raw("sales.rejected", KEY, {"reason": "not now"}, at=MON + timedelta(hours=2)))
    for kind in ("touch.form_submitted", "touch.webinar_attended", "touch.content_downloaded"):
        out.append(raw(kind, KEY, {"channel": "webinar"}, at=TUE))
    return out


def _ingest(leadengine: Any, path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert leadengine("ingest", str(path))[0] == 0
    assert leadengine("project")[0] == 0


def test_a_lead_routed_twice_has_two_rounds_with_their_own_timers(
    runtime: Runtime, leadengine: Any, tmp_path: Path, server_url: str
) -> None:
    _ingest(leadengine, tmp_path / "two.jsonl", _two_rounds())
    assert leadengine("db", "init")[0] == 0
    read = sql.Identifier(read_schema(runtime.db.schema))
    with reader_login(runtime.db, server_url) as reader, reader.cursor(row_factory=dict_row) as cur:
        rounds = cur.execute(
            sql.SQL("SELECT * FROM {}.lead_sla_rounds WHERE lead_key = %s ORDER BY round").format(
                read
            ),
            (KEY,),
        ).fetchall()
        sla = cur.execute(
            sql.SQL("SELECT * FROM {}.lead_sla WHERE lead_key = %s").format(read), (KEY,)
        ).fetchone()
    assert [r["round"] for r in rounds] == [1, 2], rounds
    first, second = rounds
    assert first["routed_at"] == MON and second["routed_at"] == TUE
    assert first["ended_at"] == TUE and second["ended_at"] is None
    assert (first["latest"], second["latest"]) == (False, True)
    assert first["strategy"] == "weighted_round_robin" and first["queue"] == "enterprise-na"
    assert first["why"] and first["trigger_event_id"]
    # round 1: 4 business hours (Mon 09-17 UTC) for the first touch, at risk after 3
    assert first["first_sales_touch_due"] == MON + timedelta(hours=4)
    assert first["first_sales_touch_at_risk"] == MON + timedelta(hours=3)
    assert first["first_sales_touch_at"] == MON + timedelta(hours=1)
    assert first["first_sales_touch_state"] == "met"
    assert first["decided_at"] == MON + timedelta(hours=2)
    assert first["decision_state"] == "met"
    # 16 business hours: Mon 10-17 (7), Tue 09-17 (8), Wed 09-10 (1)
    assert first["decision_due"] == MON + timedelta(days=2)
    # round 2: Monday's call and rejection belong to round 1; nothing since, long overdue
    assert second["first_sales_touch_at"] is None and second["decided_at"] is None
    assert second["first_sales_touch_due"] == TUE + timedelta(hours=4)
    assert second["first_sales_touch_state"] == "breached"
    assert second["decision_state"] == "breached"
    assert second["state_at"] > second["decision_due"]
    # the latest round is lead_sla's row
    assert sla is not None and sla["round"] == 2
    for column in ("owner", "queue", "routed_at", "first_sales_touch_due",
                   "first_sales_touch_at", "decision_due", "decided_at"):  # fmt: skip
        assert sla[column] == second[column], column


def test_a_round_ended_by_the_next_before_its_deadline_is_superseded(
    runtime: Runtime, leadengine: Any, tmp_path: Path, server_url: str
) -> None:
    """Routed, rejected (recycled) and routed again within the first-touch allowance, never
    touched: the first round's first-touch timer did not run out, it was superseded."""
    profile = {"industry": "software", "employees": 5000, "seniority": "vp"}
    events = [
        raw("lead.captured", KEY, {"email": "two@acme.example", "country": "US"}, at=MON),
        raw("lead.profile_updated", KEY, profile, at=MON),
    ]
    for kind in ("touch.form_submitted", "touch.webinar_attended", "touch.content_downloaded"):
        events.append(raw(kind, KEY, {"channel": "webinar"}, at=MON))
    events.append(raw("sales.rejected", KEY, {"reason": "dup"}, at=MON + timedelta(hours=1)))
    later = MON + timedelta(hours=2)
    for kind in ("touch.form_submitted", "touch.webinar_attended"):
        events.append(raw(kind, KEY, {"channel": "webinar"}, at=later))
    _ingest(leadengine, tmp_path / "sup.jsonl", events)
    assert leadengine("db", "init")[0] == 0
    read = sql.Identifier(read_schema(runtime.db.schema))
    with reader_login(runtime.db, server_url) as reader:
        rows = reader.execute(
            sql.SQL(
                "SELECT round, ended_at, first_sales_touch_state, decision_state "
                "FROM {}.lead_sla_rounds WHERE lead_key = %s ORDER BY round"
            ).format(read),
            (KEY,),
        ).fetchall()
    assert rows[0] == (1, later, "superseded", "met"), rows
    assert len(rows) == 2 and rows[1][2:] == ("breached", "breached")


def _rounds(runtime: Runtime) -> list[tuple[Any, ...]]:
    """Every round row as stored (the projection's table: no wall-clock column)."""
    with runtime.db.connect() as conn:
        return conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY lead_id, round").format(
                sql.Identifier(runtime.db.schema, "lead_sla_rounds")
            )
        ).fetchall()


@pytest.mark.parametrize("identity", [0.0, 0.5])
def test_rounds_agree_with_lead_sla_and_the_domain_and_a_rebuild_makes_the_same(
    runtime: Runtime, leadengine: Any, tmp_path: Path, server_url: str, identity: float
) -> None:
    """`identity`: that share of the journeys told under several keys (links, merges,
    unmerges): each routed lead's timers are its person's (docs/identity.md)."""
    events = list(generate(150, seed=16, identity=identity))
    half = len(events) // 2
    _ingest(leadengine, tmp_path / "a.jsonl", events[:half])  # projected in two runs
    _ingest(leadengine, tmp_path / "b.jsonl", events[half:] + _two_rounds())
    assert leadengine("db", "init")[0] == 0
    incremental = _rounds(runtime)
    assert len(incremental) > 0
    read = sql.Identifier(read_schema(runtime.db.schema))
    with reader_login(runtime.db, server_url) as reader, reader.cursor(row_factory=dict_row) as cur:
        latest = {
            r["lead_key"]: r
            for r in cur.execute(
                sql.SQL("SELECT * FROM {}.lead_sla_rounds WHERE latest").format(read)
            ).fetchall()
        }
        sla = {
            r["lead_key"]: r
            for r in cur.execute(sql.SQL("SELECT * FROM {}.lead_sla").format(read)).fetchall()
        }
        counts = {
            r["lead_key"]: r["n"]
            for r in cur.execute(
                sql.SQL("SELECT lead_key, count(*) AS n FROM {}.lead_sla_rounds GROUP BY 1").format(
                    read
                )
            ).fetchall()
        }
    assert set(latest) == set(sla) and len(sla) > 10
    rules = runtime.rules
    assert rules.sla is not None
    for key, row in sla.items():
        got = latest[key]
        assert counts[key] == row["round"] == got["round"], key
        for column in ("owner", "queue", "routed_at", "first_sales_touch_due",
                       "first_sales_touch_at", "decision_due", "decided_at"):  # fmt: skip
            assert got[column] == row[column], (key, column)
        lead = runtime.app.get_lead(key)
        members = runtime.app.person_members(lead.id)
        state = person_sla(lead, members, rules.sla, got["state_at"])
        assert state is not None
        assert got["first_sales_touch_state"] == state.first_touch.status, key
        assert got["decision_state"] == state.decision.status, key
    assert max(counts.values()) >= 2
    code, _ = leadengine("projections", "rebuild", "leads")
    assert code == 0
    assert _rounds(runtime) == incremental
