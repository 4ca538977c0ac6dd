"""Accounts end to end on PostgreSQL: matching decided, re-decided when an account changes,
scores and MQA, account-owner routing, the contract views as a reporting login, the CLI, and a
rebuild that gives the same account rows as the incremental projection."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import validate
from psycopg import sql

from engine.aggregates.account import Account, account_id
from engine.domain import outbound
from engine.domain.contract import validate_event
from engine.projections import projector
from engine.projections.rebuild import rebuild
from engine.projections.registry import ACCOUNT_TABLES
from engine.runtime import Runtime
from tests.factory import raw
from tests.integration.conftest import reader_login

ACME = {
    "name": "Acme Inc.",
    "domains": ["acme.com"],
    "industry": "software",
    "employees": 800,
    "annual_revenue": "60000000",
    "country": "US",
    "tier": 2,
    "owner": "ana.ramos",
}


def _lead(
    key: str, email: str, *, days: float, account: str | None = None, **data: Any
) -> list[Any]:
    captured = raw("lead.captured", key, {"email": email, **data}, days=days)
    if account:
        captured["account"] = account
    return [captured]


def _engaged(key: str, days: float) -> list[dict[str, Any]]:
    return [
        raw("touch.form_submitted", key, {"channel": "web", "form": "demo-request"}, days=days),
        raw("touch.meeting_held", key, {"channel": "sales"}, days=days + 0.1),
    ]


def _icp(key: str, days: float) -> dict[str, Any]:
    data = {"industry": "software", "employees": 800, "seniority": "vp", "country": "US"}
    return raw("lead.profile_updated", key, data, days=days)


def story() -> list[dict[str, Any]]:
    return [
        raw("account.updated", "a1", ACME, days=0),
        raw(
            "account.updated",
            "a2",
            {"name": "ACME LLC", "domains": ["acme-eu.com"], "tier": 1},
            days=0,
        ),
        raw(
            "account.updated",
            "a3",
            {"name": "Globex", "domains": ["globex.com"], "owner": "dee.walsh"},
            days=0,
        ),
        *_lead("l1", "pat@acme.com", days=1, company="Acme"),
        *_engaged("l1", 1.5),
        *_lead("l2", "kim@eu.sales.acme.com", days=2),
        *_engaged("l2", 2.5),
        *_lead("l3", "lee@gmail.com", days=3, company="ACME"),
        *_lead("l4", "max@acme.com", days=4, account="a3"),
        _icp("l4", 4.1),
        raw("touch.form_submitted", "l4", {"channel": "web"}, days=4.2),
        *_lead("l5", "sam@gmail.com", days=5),
    ]


def ingest(rt: Runtime, events: list[dict[str, Any]]) -> None:
    rt.app.ingest([validate_event(e) for e in events])
    rt.projector.run(until_caught_up=True)


def members(conn: Any, schema: str) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        sql.SQL("SELECT lead_key, account_key, rule FROM {}.account_members").format(
            sql.Identifier(f"{schema}_read")
        )
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def table(rt: Runtime, name: str, where: str = "") -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sql.SQL("SELECT * FROM {} " + where + " ORDER BY 1").format(
                sql.Identifier(rt.db.schema, name)
            )
        ).fetchall()


def test_accounts_end_to_end(
    runtime: Runtime, server_url: str, leadengine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(runtime, story())
    schema = runtime.db.schema
    with reader_login(runtime.db, server_url) as conn:
        assert members(conn, schema) == {
            "l1": ("a1", "domain"),
            "l2": ("a1", "domain"),  # a parent domain of eu.sales.acme.com
            "l3": ("a2", "name"),  # free mail; "ACME" is a1 and a2: a2 wins on tier
            "l4": ("a3", "explicit"),  # its events name a3 (its domain says a1)
        }  # l5: free mail, no company: no account
        a1 = conn.execute(
            sql.SQL(
                "SELECT members, engaged, fit, engagement, score, mqa_at, mqa_rules, mqa_trigger "
                "FROM {}.account_state WHERE account_key = 'a1'"
            ).format(sql.Identifier(f"{schema}_read"))
        ).fetchone()
    assert a1 is not None
    assert a1[:5] == (2, 2, 90, 80, 85)
    assert a1[5] is not None and a1[6] == runtime.rules.ref and a1[7]
    (why,) = table(runtime, "account_members", "WHERE account_id IS NULL")
    assert "gmail.com is a free-mail domain" in why[4]

    l4 = runtime.app.get_lead("l4")
    assert (l4.stage, l4.owner, l4.queue) == ("mql", "dee.walsh", "account-owner")
    # owner routing by domain and name: tests/integration/test_account_owner_routing.py

    # each match is a decision recorded on its account, as the table has it
    def recorded() -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for k in ("a1", "a2", "a3"):
            account = runtime.app.repository.get(account_id(k))
            out[k] = {lead: rule for lead, (rule, _) in account.members.items()}
        return out

    ids = {k: str(runtime.app.get_lead(k).id) for k in ("l1", "l2", "l3", "l4", "l5")}
    assert recorded() == {
        "a1": {ids["l1"]: "domain", ids["l2"]: "domain"},
        "a2": {ids["l3"]: "name"},
        "a3": {ids["l4"]: "explicit"},
    }

    # a1 moves to another domain: every lead is decided again
    ingest(runtime, [raw("account.updated", "a1", {"domains": ["acme.io"]}, days=6)])
    with reader_login(runtime.db, server_url) as conn:
        now = members(conn, schema)
    assert now["l1"] == ("a2", "name") and "l2" not in now  # l2 gave no company
    assert recorded() == {
        "a1": {},
        "a2": {ids["l3"]: "name", ids["l1"]: "name"},
        "a3": {ids["l4"]: "explicit"},
    }
    a1_events = [
        e
        for e in runtime.app.repository.event_store.get(account_id("a1"))
        if isinstance(e, Account.MemberDecided)
    ]
    assert [(e.lead_id, e.joined) for e in a1_events][-2:] in (
        [(ids["l1"], False), (ids["l2"], False)],
        [(ids["l2"], False), (ids["l1"], False)],
    )
    left = [e for e in a1_events if e.lead_id == ids["l2"]][-1]
    assert not left.joined and "no account matches" in left.reason
    mqa = table(runtime, "account_scores", "WHERE account_key = 'a1'")[0]
    assert mqa[5] == 0 and mqa[8] == a1[5]  # the MQA decision stays as recorded

    code, out = leadengine("account", "explain", "a1")
    assert code == 0 and "account-industry-software" in out and "MQA since" in out
    code, out = leadengine("account", "show", "a2")
    assert code == 0 and "l1" in out and "l3" in out
    code, out = leadengine("report", "accounts", "--format", "json")
    assert code == 0 and '"mqas": 1' in out and '"accounts": 3' in out
    code, out = leadengine("lead", "explain", "l3", "--format", "json")
    match = json.loads(out)["account"]
    assert (match["account_key"], match["rule"]) == ("a2", "name")
    assert "a2 wins on tier (tier 1 vs tier 2)" in match["reason"]
    code, out = leadengine("lead", "explain", "l3")
    assert code == 0 and "Account (default@2026.1" in out
    code, _ = leadengine("account", "show", "nope")
    assert code != 0

    # the MQA is a decision recorded on the account, with its outbound record
    account = runtime.app.repository.get(account_id("a1"))
    assert account.mqa is not None and account.mqa["trigger"] == a1[7]
    with runtime.db.connect() as conn:
        outbox = conn.execute(
            sql.SQL(
                "SELECT lead_id, type, key, value FROM {} WHERE type = 'account.qualified'"
            ).format(sql.Identifier(runtime.db.schema, "outbox"))
        ).fetchall()
    assert [(r[0], r[1], r[2]) for r in outbox] == [(account.id, "account.qualified", "a1")]
    doc = json.loads(outbox[0][3])
    assert doc["id"] == f"{account.id}:{account.mqa['version']}" and doc["subject"] == "a1"
    assert doc["data"]["trigger_event_id"] == a1[7] and doc["data"]["score"] == 85
    assert doc["data"]["rules_version"] == runtime.rules.ref and doc["data"]["members"] == 2
    validate(doc, outbound.json_schema("account.qualified"))
    # every match decision too, each with its record
    with runtime.db.connect() as conn:
        matched = conn.execute(
            sql.SQL(
                "SELECT lead_id, version, value FROM {} WHERE type = 'account.member_decided'"
            ).format(sql.Identifier(runtime.db.schema, "outbox"))
        ).fetchall()
    stored = [
        (account_id(k), e.originator_version)
        for k in ("a1", "a2", "a3")
        for e in runtime.app.repository.event_store.get(account_id(k))
        if isinstance(e, Account.MemberDecided)
    ]
    assert sorted((r[0], r[1]) for r in matched) == sorted(stored) and len(stored) == 7
    for r in matched:
        validate(json.loads(r[2]), outbound.json_schema("account.member_decided"))

    before = {t: table(runtime, t) for t in ACCOUNT_TABLES}
    before["lead_state"] = table(runtime, "lead_state")
    monkeypatch.setattr(projector, "LEAD_ROWS_CHUNK", 2)  # the leads' rows in several chunks
    rebuild(runtime.app, runtime.db, "leads", batch_size=3)
    after = {t: table(runtime, t) for t in (*ACCOUNT_TABLES, "lead_state")}
    # every account row the same, the MQA moment too: a1 qualified and fell below later; the
    # rebuild reads its recorded decision instead of deciding on the final state
    for t in (*ACCOUNT_TABLES, "lead_state"):
        assert after[t] == before[t], t
    mqas = {r[1]: (r[8], r[9]) for r in after["account_scores"] if r[8]}
    assert mqas == {"a1": (a1[5], a1[7])}
    # more events after the rebuild: the recorded decision is not taken again
    ingest(runtime, [raw("account.updated", "a1", {"domains": ["acme.com"]}, days=7)])
    assert runtime.app.repository.get(account_id("a1")).mqa == account.mqa
    with runtime.db.connect() as conn:
        n = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE type = 'account.qualified'").format(
                sql.Identifier(runtime.db.schema, "outbox")
            )
        ).fetchone()
    assert n == (1,)
