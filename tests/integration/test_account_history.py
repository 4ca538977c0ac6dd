"""`account history` lists each lead's match decisions as they were taken (recorded on the
account), so a lead re-decided later still shows how it joined."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from engine.domain.contract import validate_event
from engine.runtime import Runtime
from tests.factory import raw


def _run(rt: Runtime, events: list[dict[str, Any]]) -> None:
    rt.app.ingest([validate_event(e) for e in events])
    rt.projector.run(until_caught_up=True)


def test_history_shows_the_match_each_lead_joined_by(runtime: Runtime, leadengine: Any) -> None:
    _run(
        runtime,
        [
            raw("account.updated", "a1", {"name": "Acme Inc"}, days=0),
            raw("lead.captured", "l1", {"email": "pat@acme.com", "company": "Acme"}, days=1),
            raw("lead.captured", "l2", {"email": "kim@gmail.com", "company": "ACME"}, days=1),
        ],
    )
    # a1 claims acme.com: l1 is decided again, by domain; l2 stays by name
    _run(runtime, [raw("account.updated", "a1", {"domains": ["acme.com"]}, days=2)])
    # a1 is renamed: l2 (free mail, company only) leaves it
    _run(runtime, [raw("account.updated", "a1", {"name": "Globex"}, days=3)])

    code, out = leadengine("account", "history", "a1", "--format", "json")
    assert code == 0
    entries = json.loads(out)["history"]
    leads = [
        (e["what"], e["detail"].split(":")[0])
        for e in entries
        if e["what"] in ("lead matched", "lead left")
    ]
    assert leads == [
        ("lead matched", "lead l1 by name"),
        ("lead matched", "lead l2 by name"),
        ("lead matched", "lead l1 by domain"),
        ("lead left", "lead l2"),
    ]
    first = next(e for e in entries if e["detail"].startswith("lead l1 by name"))
    assert "company 'Acme' normalises to 'acme', the name of a1" in first["detail"]
    assert first["at"].startswith("2026-03-02")  # when it joined, not when re-decided
    left = next(e for e in entries if e["what"] == "lead left")
    assert "no account matches" in left["detail"] and left["at"].startswith("2026-03-04")
    code, out = leadengine("account", "history", "a1")
    assert code == 0 and "matches as decided then" in out


def _explain(leadengine: Any, key: str, *clock: str) -> dict[str, Any]:
    code, out = leadengine("lead", "explain", key, *clock, "--format", "json")
    assert code == 0, out
    account: dict[str, Any] = json.loads(out)["account"]
    return account


def test_lead_explain_as_of_replays_the_recorded_match_decisions(
    runtime: Runtime, leadengine: Any
) -> None:
    """`lead explain --as-of T` folds the lead's recorded decisions to T (recorded clock),
    `--occurred-by T` by their inputs' time: the account the lead was in then, not now."""
    runtime.app.ingest(
        [
            validate_event(e)
            for e in (
                raw("account.updated", "a1", {"name": "Acme Inc"}, days=0),
                raw("lead.captured", "l1", {"email": "pat@acme.com", "company": "Acme"}, days=1),
                raw("lead.captured", "l2", {"email": "kim@gmail.com", "company": "ACME"}, days=1),
            )
        ]
    )
    before = datetime.now(UTC)  # the leads are recorded, not yet matched
    runtime.projector.run(until_caught_up=True)
    t1 = datetime.now(UTC)
    _run(runtime, [raw("account.updated", "a1", {"domains": ["acme.com"]}, days=2)])
    t2 = datetime.now(UTC)
    _run(runtime, [raw("account.updated", "a1", {"name": "Globex"}, days=3)])

    first = _explain(leadengine, "l1", "--as-of", t1.isoformat())
    assert (first["account_key"], first["rule"]) == ("a1", "name")
    assert first["as_of"].startswith("as matched recorded by " + t1.isoformat()[:19])
    assert (_explain(leadengine, "l1", "--as-of", t2.isoformat())["rule"]) == "domain"
    nothing = _explain(leadengine, "l1", "--as-of", before.isoformat())
    assert nothing["account_key"] is None and "no match decision" in nothing["reason"]
    # l2 was in a1 by name until a1 was renamed; now in no account
    assert _explain(leadengine, "l2", "--as-of", t2.isoformat())["account_key"] == "a1"
    gone = _explain(leadengine, "l2", "--as-of", datetime.now(UTC).isoformat())
    assert gone["account_key"] is None and gone["reason"].startswith("left account a1: ")
    assert _explain(leadengine, "l2")["account_key"] is None  # now: the read model agrees
    # on the occurred clock: by its inputs' time (a1 claimed acme.com on 2026-03-03)
    by_name = _explain(leadengine, "l1", "--occurred-by", "2026-03-02T12:00:00Z")
    assert (by_name["account_key"], by_name["rule"]) == ("a1", "name")
    by_domain = _explain(leadengine, "l1", "--occurred-by", "2026-03-03T12:00:00Z")
    assert (by_domain["account_key"], by_domain["rule"]) == ("a1", "domain")
    code, out = leadengine("lead", "explain", "l1", "--as-of", t1.isoformat())
    assert code == 0 and "Account as matched recorded by" in out


def test_an_over_long_id_is_not_echoed_whole(runtime: Runtime, leadengine: Any) -> None:
    """`account show`, `account history`, `lead explain` with a 5,000-character id: the error
    names the id by its start and its length, on one short line."""
    _run(runtime, [raw("account.updated", "a1", {"name": "Acme Inc"}, days=0)])
    long = "x" * 4990 + "TAIL-SECRET"
    for argv in (
        ("account", "show", long),
        ("account", "history", long),
        ("account", "explain", long),
        ("lead", "explain", long),
        ("lead", "explain", long, "--as-of", "2026-03-01"),
    ):
        code, out = leadengine(*argv)
        err = leadengine.stderr[-1]
        assert code == 2 and out == "", argv
        assert "TAIL-SECRET" not in err and "(5,001 characters)" in err, (argv, err[:300])
        assert len(err) < 400, (argv, len(err))


def test_a_generated_stream_with_accounts_matches_by_every_rule(runtime: Runtime) -> None:
    """`generate --accounts N` through the engine: every line accepted, its leads matched by
    each rule, free-mail leads among them, and same-name accounts told apart by tie-breakers."""
    from engine.domain import generator

    events = generator.generate(250, seed=4, accounts=30, free_mail=0.25)
    runtime.app.ingest([validate_event(e) for e in events])
    runtime.projector.run(until_caught_up=True)
    with runtime.db.connect() as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT m.rule, m.reason, cardinality(m.candidates), s.email_domain "
                "FROM {}.account_members m JOIN {}.account_signals s USING (lead_id)"
            ).format(sql.Identifier(runtime.db.schema), sql.Identifier(runtime.db.schema))
        ).fetchall()
        accounts = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.account_state").format(
                sql.Identifier(runtime.db.schema)
            )
        ).fetchone()
    assert accounts is not None and accounts[0] == 30
    rules = {r[0] for r in rows}
    assert {"explicit", "domain", "name"} <= rules, rules
    assert any(r[3] == "gmail.com" and r[0] == "name" for r in rows)
    ambiguous = [r for r in rows if r[0] == "name" and r[2] > 1]
    assert ambiguous and all(" candidates" in r[1] for r in ambiguous)


def test_a_match_taken_before_decisions_were_recorded_is_replayed_before_it_changes(
    runtime: Runtime, leadengine: Any, monkeypatch: Any
) -> None:
    """A lead matched before migration 22 had no recorded decision: re-decided since, its
    first recorded decision joined its new account (or left none), so `lead explain --as-of`
    before it showed it in no account. Its match then is recorded as a baseline with the
    decision that changes it: replayed from its inputs' time, said to be not recorded then."""
    record = runtime.app.record_account_decisions
    # leadengine before migration 22: matches decided and projected, none recorded
    monkeypatch.setattr(
        runtime.app, "record_account_decisions", lambda mqas, _members: record(mqas, [])
    )
    _run(
        runtime,
        [
            raw("account.updated", "a1", {"name": "Acme Inc"}, days=0),
            raw("account.updated", "a2", {"name": "Globex"}, days=0),
            raw("lead.captured", "l1", {"email": "pat@acme.com", "company": "Acme"}, days=1),
            raw("lead.captured", "l2", {"email": "kim@gmail.com", "company": "ACME"}, days=1),
        ],
    )
    monkeypatch.setattr(runtime.app, "record_account_decisions", record)
    t1 = datetime.now(UTC)
    assert _explain(leadengine, "l2")["account_key"] == "a1"  # matched now, nothing recorded
    # re-decided: l1 by domain in a1 (same account, another rule); l2 moves to a2 by name
    _run(
        runtime,
        [
            raw("account.updated", "a1", {"domains": ["acme.com"], "name": "Initech"}, days=2),
            raw("account.updated", "a2", {"name": "Acme LLC"}, days=2),
        ],
    )
    t2 = datetime.now(UTC)
    for key, rule_then in (("l1", "name"), ("l2", "name")):
        then = _explain(leadengine, key, "--as-of", t1.isoformat())
        assert (then["account_key"], then["rule"]) == ("a1", rule_then), (key, then)
        assert "taken before match decisions were recorded (migration 22)" in then["as_of"]
        assert "not recorded then" in then["as_of"]
        happened = _explain(leadengine, key, "--occurred-by", "2026-03-02T12:00:00Z")
        assert happened["account_key"] == "a1", (key, happened)
    assert (_explain(leadengine, "l1", "--as-of", t2.isoformat())["rule"]) == "domain"
    moved = _explain(leadengine, "l2", "--as-of", t2.isoformat())
    assert moved["account_key"] == "a2" and "migration 22" not in moved["as_of"]
    code, out = leadengine("account", "history", "a1", "--format", "json")
    assert code == 0
    entries = json.loads(out)["history"]
    left = [e for e in entries if e["what"] == "lead left"]
    assert [e["detail"].split(":")[0] for e in left] == ["lead l2"]  # recorded now
    baseline = [e for e in entries if "matched before decisions were recorded" in e["detail"]]
    assert sorted(e["detail"].split(":")[0] for e in baseline) == [
        "lead l1 by name",
        "lead l2 by name",
    ]
