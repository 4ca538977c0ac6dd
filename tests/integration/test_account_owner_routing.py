"""Account-owner routing by domain and name on PostgreSQL: the write-side account directory
(migration 24) is written with each account's update, read by any consumer's routing step,
and filled from `account_state` for accounts projected before."""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql

from engine.domain.contract import validate_event
from engine.postgres import account_directory
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import raw
from tests.integration.test_accounts import _icp, _lead


def _mql(key: str, email: str, days: float, **data: Any) -> list[dict[str, Any]]:
    return [
        *_lead(key, email, days=days, **data),
        _icp(key, days + 0.1),
        raw("touch.form_submitted", key, {"channel": "web"}, days=days + 0.2),
    ]


def _ingest(rt: Runtime, events: list[dict[str, Any]]) -> None:
    rt.app.ingest([validate_event(e) for e in events])


def _account(key: str, days: float, **data: Any) -> dict[str, Any]:
    return raw("account.updated", key, data, days=days)


def _directory(rt: Runtime) -> dict[str, tuple[Any, ...]]:
    with rt.db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(rt.db.schema, account_directory.TABLE)
            )
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_two_consumers_route_by_domain_and_name_to_the_owner(
    runtime: Runtime, settings: Settings
) -> None:
    first = runtime
    with open_runtime(settings, rules=first.rules, database=first.db) as second:
        # the first consumer takes the accounts, the second the leads (other partitions)
        _ingest(
            first,
            [
                _account("a1", 0, name="Acme Inc.", domains=["acme.com"], owner="ana", tier=2),
                _account("a2", 0, name="ACME LLC", tier=1, owner="bo"),
                _account("a3", 0, name="Initech", domains=["initech.com"]),  # no owner
            ],
        )
        assert _directory(first)["a1"] == (
            "Acme Inc.",
            "acme inc",
            ["acme.com"],
            "ana",
            2,
            _directory(first)["a1"][-1],
        )
        _ingest(second, _mql("l1", "pat@eu.acme.com", 1))  # domain: a1
        _ingest(second, _mql("l2", "kim@gmail.com", 1, company="Acme"))  # name: a1, a2 -> tier
        _ingest(second, _mql("l3", "lee@gmail.com", 1, company="Globex"))  # no account
        _ingest(second, _mql("l4", "max@initech.com", 1))  # an account without owner
        owners = {
            k: (second.app.get_lead(k).owner, second.app.get_lead(k).queue)
            for k in ("l1", "l2", "l3", "l4")
        }
        assert owners["l1"] == ("ana", "account-owner")
        assert owners["l2"] == ("bo", "account-owner")
        assert owners["l3"][1] not in (None, "account-owner")
        assert owners["l4"][1] not in (None, "account-owner")

        # the first consumer changes a1's owner: the second routes by it at once
        _ingest(first, [_account("a1", 2, owner="cy")])
        _ingest(second, _mql("l5", "sue@acme.com", 3))
        assert second.app.get_lead("l5").owner == "cy"

        # the projector decides the same accounts the routing took
        first.projector.run(until_caught_up=True)
        with first.db.connect() as conn:
            rows = conn.execute(
                sql.SQL("SELECT lead_key, account_key, rule FROM {}.account_members").format(
                    sql.Identifier(f"{first.db.schema}_read")
                )
            ).fetchall()
        matched = {r[0]: (r[1], r[2]) for r in rows}
        assert matched["l1"] == ("a1", "domain") and matched["l5"] == ("a1", "domain")
        assert matched["l2"] == ("a2", "name")


def test_the_migration_fills_the_directory_from_account_state(runtime: Runtime) -> None:
    _ingest(runtime, [_account("a1", 0, name="Acme", domains=["acme.com"], owner="ana")])
    runtime.projector.run(until_caught_up=True)
    before = _directory(runtime)
    with runtime.db.connect() as conn:
        conn.execute(
            sql.SQL("DELETE FROM {}").format(
                sql.Identifier(runtime.db.schema, account_directory.TABLE)
            )
        )
        account_directory.create(conn, runtime.db.schema)  # migration 24's step
    assert _directory(runtime) == before and before["a1"][:4] == (
        "Acme",
        "acme",
        ["acme.com"],
        "ana",
    )


def test_a_lead_naming_an_unknown_account_says_so_in_its_match(
    runtime: Runtime, leadengine: Any
) -> None:
    _ingest(
        runtime,
        [
            _account("a1", 0, name="Acme", domains=["acme.com"], owner="ana"),
            *_mql("l1", "pat@acme.com", 1, account="zz"),  # zz: no such account
        ],
    )
    routed = runtime.app.get_lead("l1")
    assert (routed.owner, routed.queue) == ("ana", "account-owner")
    runtime.projector.run(until_caught_up=True)
    code, out = leadengine("lead", "explain", "l1", "--format", "json")
    match = json.loads(out)["account"]
    assert code == 0 and (match["account_key"], match["rule"]) == ("a1", "domain")
    assert match["reason"].startswith("named account zz is not known (yet); e-mail domain")
    code, out = leadengine("lead", "explain", "l1")
    assert code == 0 and "named account zz is not known" in " ".join(out.split())
    assert "as_of" not in match and "as matched now" not in out
    # as of a moment: the recorded decisions replayed to then, and it says so
    code, out = leadengine("lead", "explain", "l1", "--as-of", "2100-01-01", "--format", "json")
    then = json.loads(out)["account"]
    assert code == 0 and then["as_of"].startswith("as matched recorded by 2100-01-01")
    assert (then["account_key"], then["reason"]) == ("a1", match["reason"])
    code, out = leadengine("lead", "explain", "l1", "--as-of", "2100-01-01")
    assert code == 0 and "Account as matched recorded by 2100-01-01" in out


def test_a_tie_past_tier_goes_to_the_queues_naming_both_candidates(
    runtime: Runtime, leadengine: Any
) -> None:
    """Two owned accounts of one name and one tier: routing cannot break the tie (the next
    tie-breakers read every lead), so the queues decide and their reason names both accounts;
    the projector's match (the lowest id, every tie-breaker equal) names both too."""
    _ingest(
        runtime,
        [
            _account("a1", 0, name="Acme Inc.", owner="ana", tier=2),
            _account("a2", 0, name="ACME LLC", owner="bo", tier=2),
            *_mql("l1", "kim@gmail.com", 1, company="Acme"),
        ],
    )
    lead = runtime.app.get_lead("l1")
    assert lead.queue not in (None, "account-owner")
    why = lead.routed[-1].why
    assert why.startswith("accounts a1, a2 match the lead by name and tie on tier; "), why
    runtime.projector.run(until_caught_up=True)
    code, out = leadengine("lead", "explain", "l1", "--format", "json")
    match = json.loads(out)["account"]
    assert code == 0 and (match["account_key"], match["rule"]) == ("a1", "name")
    assert "2 candidates (a1, a2) tie on tier, most_leads, latest_activity" in match["reason"]
