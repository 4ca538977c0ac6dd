"""Buying groups, the account funnel, account history and account attribution on PostgreSQL:
coverage decided from the leads' personas and engagement, the contract views as a reporting
login, the CLI, and credits of every model adding up exactly when a won deal on an account
credits the touches of all its people."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from psycopg import sql

from engine.analytics.accounts import account_keys, by_account
from engine.analytics.attribution import MODELS, attribute
from engine.analytics.load import load
from engine.analytics.paths import build_paths
from engine.projections.rebuild import rebuild
from engine.projections.registry import ACCOUNT_TABLES
from engine.runtime import Runtime
from tests.factory import raw
from tests.integration.conftest import reader_login
from tests.integration.test_accounts import ingest, table

BIGCO = {
    "name": "BigCo Ltd",
    "domains": ["bigco.com"],
    "industry": "software",
    "employees": 5000,
    "country": "GB",
    "tier": 1,
}


def person(key: str, email: str, seniority: str, days: float, **data: Any) -> list[Any]:
    return [
        raw("lead.captured", key, {"email": email, **data}, days=days),
        raw("lead.profile_updated", key, {"seniority": seniority}, days=days + 0.01),
    ]


def engaged(key: str, days: float, channel: str) -> list[Any]:
    return [
        raw("touch.form_submitted", key, {"channel": channel, "form": "demo"}, days=days),
        raw("touch.meeting_held", key, {"channel": "sales"}, days=days + 0.1),
    ]


def story() -> list[dict[str, Any]]:
    return [
        raw("account.updated", "b1", BIGCO, days=0),
        raw("account.updated", "b2", {"name": "Smallco", "domains": ["smallco.io"]}, days=0),
        *person("p1", "ceo@bigco.com", "vp", 1),  # decision-maker: economic buyer
        *engaged("p1", 1.2, "web"),
        *person("p2", "ops@bigco.com", "manager", 2),  # champion
        *engaged("p2", 2.2, "paid_search"),
        *person("p3", "ana@bigco.com", "individual", 3),  # user, not engaged
        *person("p4", "kim@gmail.com", "manager", 4, company="Smallco"),  # name: b2, champion
        raw("touch.webinar_attended", "p4", {"channel": "webinar"}, days=4.1),
        raw("opportunity.opened", "p2", {"amount": "90000", "currency": "EUR"}, days=10),
        raw("deal.won", "p2", {"amount": "90000", "currency": "EUR"}, days=20),
    ]


def test_buying_groups_funnel_history_and_attribution(
    runtime: Runtime, server_url: str, leadengine: Any
) -> None:
    ingest(runtime, story())
    read = f"{runtime.db.schema}_read"
    with reader_login(runtime.db, server_url) as conn:
        group = conn.execute(
            sql.SQL(
                "SELECT role, required, leads, engaged, covered FROM {}.account_buying_group "
                "WHERE account_key = 'b1' ORDER BY role"
            ).format(sql.Identifier(read))
        ).fetchall()
        b1 = conn.execute(
            sql.SQL(
                "SELECT segment, roles_covered, roles_missing, group_engagement "
                "FROM {}.account_state WHERE account_key = 'b1'"
            ).format(sql.Identifier(read))
        ).fetchone()
        funnel = dict(
            conn.execute(
                sql.SQL("SELECT stage, accounts FROM {}.kpi_account_funnel").format(
                    sql.Identifier(read)
                )
            ).fetchall()
        )
    assert group == [
        ("champion", True, 1, 1, True),
        ("economic-buyer", True, 1, 1, True),
        ("user", True, 1, 0, False),  # p3 holds it but is not engaged
    ]
    assert b1 is not None
    assert (b1[0], sorted(b1[1]), b1[2]) == ("enterprise", ["champion", "economic-buyer"], ["user"])
    assert 0 < b1[3] < 100
    # an account reaches a stage when its first lead does: both have leads; only b1 won
    assert funnel["lead"] == 2 and funnel["opportunity"] == 1 and funnel["customer"] == 1

    code, out = leadengine("account", "show", "b1")
    assert code == 0 and "Buying group (enterprise): missing user" in out
    code, out = leadengine("report", "accounts", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["covered"] == 1  # b2 (smb) needs a champion: p4; b1 misses user
    assert {r["segment"]: r["covered"] for r in doc["buying_groups"]} == {"enterprise": 0, "smb": 1}
    assert {r["stage"]: r["accounts"] for r in doc["funnel"]}["customer"] == 1
    code, out = leadengine("account", "history", "b1", "--format", "json")
    assert code == 0
    entries = json.loads(out)["history"]
    whats = [e["what"] for e in entries]
    assert whats[0] == "account updated" and whats.count("lead matched") == 3
    reached = [w.removeprefix("reached ") for w in whats if w.startswith("reached ")]
    assert reached == ["lead", "mql", "sal", "sql", "opportunity", "customer"]  # funnel order
    assert "schema_version" not in entries[0]["detail"] and "employees=5000" in entries[0]["detail"]
    times = [e["at"] for e in entries]
    assert times == sorted(times)
    code, out = leadengine("account", "history", "nope")
    assert code != 0

    # attribution by account: p2's won deal credits p1's and p2's touches, every model exact
    ds = by_account(load(runtime.db), account_keys(runtime.db))
    assert ds.left_out == 0 and [j.key for j in ds.dataset.journeys] == ["b1", "b2"]
    for value in ("conversions", "revenue"):
        paths = build_paths(
            ds.dataset, runtime.rules.attribution, value=value, currency="EUR", conversion=None
        )
        for model in MODELS:
            credits = attribute(paths, model, "channel", runtime.rules.attribution)
            assert sum(credits.credits.values()) == credits.total, (model, value)
            if model in ("first_touch", "linear"):  # p1's web touch came first
                assert credits.credits.get("web", Decimal(0)) > 0, (model, value)
    code, out = leadengine(
        "report", "attribution", "--by-account", "--value", "revenue", "--currency", "EUR",
        "--format", "json",
    )  # fmt: skip
    doc = json.loads(out)
    assert code == 0 and doc["accounts"] == 2 and Decimal(str(doc["total"])) == Decimal("90000")
    code, _ = leadengine("report", "attribution", "--by-account", "--save")
    assert code == 2

    before = {t: table(runtime, t) for t in ACCOUNT_TABLES}
    rebuild(runtime.app, runtime.db, "leads", batch_size=4)
    assert {t: table(runtime, t) for t in ACCOUNT_TABLES if t != "account_scores"} == {
        t: rows for t, rows in before.items() if t != "account_scores"
    }
