"""Provisional accounts on PostgreSQL: opened at ingest for an unmatched business domain,
shown in the account views with `provisional`, adopted by a CRM account claiming the domain
(its leads move; each move a recorded match decision); a rebuild gives the same rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from psycopg import sql

from engine.aggregates.account import Account, account_id, provisional_key
from engine.domain.contract import validate_event
from engine.domain.rules import Rules, parse_rules
from engine.postgres import db as dbmod
from engine.postgres.account_directory import AccountDirectory
from engine.projections.rebuild import rebuild
from engine.projections.registry import ACCOUNT_TABLES
from engine.runtime import open_runtime
from engine.settings import Settings
from tests.factory import raw

ROOT = Path(__file__).resolve().parents[2]


def provisional_rules() -> Rules:
    text = (ROOT / "engine" / "default_rules.yaml").read_text()
    assert "\naccounts:\n" in text
    text = text.replace(
        "\naccounts:\n", "\naccounts:\n  provisional: {from: domain, min_leads: 2}\n"
    )
    return parse_rules(text)


def _view(db: dbmod.Database, query: str) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sql.SQL(query).format(r=sql.Identifier(f"{db.schema}_read"))
        ).fetchall()


def _table(db: dbmod.Database, name: str) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(db.schema, name))
        ).fetchall()


def test_provisional_account_opened_shown_adopted(
    settings: Settings, database: dbmod.Database, leadengine: Any
) -> None:
    with open_runtime(settings, rules=provisional_rules(), database=database) as rt:

        def run(*events: dict[str, Any]) -> None:
            rt.app.ingest([validate_event(e) for e in events])
            rt.projector.run(until_caught_up=True)

        run(
            raw("lead.captured", "l1", {"email": "pat@initech.io"}, days=1),
            raw("lead.captured", "l9", {"email": "joe@gmail.com"}, days=1),
        )
        assert _view(rt.db, "SELECT account_key FROM {r}.account_state") == []  # 1 of 2
        run(raw("lead.captured", "l2", {"email": "kim@initech.io"}, days=2))
        key = provisional_key("initech.io")
        assert _view(
            rt.db, "SELECT account_key, name, domains, provisional, members FROM {r}.account_state"
        ) == [(key, "initech.io", ["initech.io"], True, 2)]
        members = _view(rt.db, "SELECT lead_key, account_key, rule FROM {r}.account_members")
        assert sorted(members) == [("l1", key, "domain"), ("l2", key, "domain")]
        code, out = leadengine("account", "show", key)
        assert code == 0 and "(provisional: opened for unmatched leads" in out and "l1" in out
        code, out = leadengine("account", "show", key, "--format", "json")
        assert json.loads(out)["provisional"] is True

        # a CRM account claims the domain: it adopts the provisional one and its leads
        run(raw("account.updated", "c9", {"name": "Initech", "domains": ["initech.io"]}, days=3))
        rows = _view(
            rt.db, "SELECT account_key, domains, provisional, members FROM {r}.account_state"
        )
        assert sorted(rows) == [("c9", ["initech.io"], False, 2), (key, [], True, 0)]
        members = _view(rt.db, "SELECT lead_key, account_key, rule FROM {r}.account_members")
        assert sorted(members) == [("l1", "c9", "domain"), ("l2", "c9", "domain")]
        provisional = rt.app.repository.get(account_id(key))
        assert isinstance(provisional, Account) and provisional.adopted_by == "c9"
        assert provisional.members == {}  # each lead's leaving recorded on it
        crm = rt.app.repository.get(account_id("c9"))
        assert set(crm.members) == {str(rt.app.get_lead(k).id) for k in ("l1", "l2")}
        code, out = leadengine("account", "history", key, "--format", "json")
        whats = [e["what"] for e in json.loads(out)["history"]]
        assert code == 0 and whats.count("lead matched") == 2 and whats.count("lead left") == 2

        # the CRM account drops the domain: the provisional account claims it again and its
        # leads go back to it (each move a recorded decision)
        run(raw("account.updated", "c9", {"domains": ["initech.com"]}, days=4, id="c9-2"))
        rows = _view(
            rt.db, "SELECT account_key, domains, provisional, members FROM {r}.account_state"
        )
        assert sorted(rows) == [("c9", ["initech.com"], False, 0), (key, ["initech.io"], True, 2)]
        members = _view(rt.db, "SELECT lead_key, account_key, rule FROM {r}.account_members")
        assert sorted(members) == [("l1", key, "domain"), ("l2", key, "domain")]
        released = rt.app.repository.get(account_id(key))
        assert isinstance(released, Account) and released.adopted_by is None
        assert len(released.members) == 2

        before = {t: sorted(map(repr, _table(rt.db, t))) for t in ACCOUNT_TABLES}
        rebuild(rt.app, rt.db, "leads", batch_size=3)
        for t in ACCOUNT_TABLES:
            assert sorted(map(repr, _table(rt.db, t))) == before[t], t


def test_a_provisional_account_and_a_crm_account_never_both_claim_a_domain(
    settings: Settings, database: dbmod.Database, monkeypatch: Any
) -> None:
    rules = provisional_rules()
    with (
        open_runtime(settings, rules=rules, database=database) as leads,
        open_runtime(settings, rules=rules, database=database) as crm,
    ):
        crm_update = validate_event(
            raw("account.updated", "c9", {"domains": ["initech.io"]}, days=3)
        )
        # the account consumer read the directory before the lead consumer's opening committed
        # (a batch reads a small directory whole, once: `BatchReads`)
        monkeypatch.setattr(crm.app.account_directory, "snapshot", lambda _m: AccountDirectory())
        monkeypatch.setattr(crm.app.account_directory, "provisional_under", lambda _d: [])
        leads.app.ingest(
            [
                validate_event(raw("lead.captured", k, {"email": f"{k}@initech.io"}, days=1))
                for k in ("l1", "l2")
            ]
        )
        with pytest.raises(IntegrityError):  # its save would leave both claiming initech.io
            crm.app.ingest([crm_update])
        monkeypatch.undo()
        assert crm.app.ingest([crm_update]).accepted == 1  # redone on fresh reads: adopts
        adopted = crm.app.repository.get(account_id(provisional_key("initech.io")))
        assert adopted.adopted_by == "c9"

        # the other way round: an opening that would claim a CRM account's domain
        leads.app.ingest(
            [validate_event(raw("account.updated", "c8", {"domains": ["hooli.dev"]}, days=1))]
        )
        # (a batch reads a small directory whole, once: `BatchReads`; read before c8 committed)
        monkeypatch.setattr(leads.app.account_directory, "snapshot", lambda _m: AccountDirectory())
        monkeypatch.setattr(leads.app.account_directory, "candidates", lambda *_a: [])
        with pytest.raises(IntegrityError):
            leads.app.ingest(
                [
                    validate_event(raw("lead.captured", k, {"email": f"{k}@hooli.dev"}, days=2))
                    for k in ("l3", "l4")
                ]
            )
        monkeypatch.undo()
        leads.app.ingest(
            [
                validate_event(raw("lead.captured", k, {"email": f"{k}@hooli.dev"}, days=2))
                for k in ("l3", "l4")
            ]
        )
        with pytest.raises(AggregateNotFoundError):  # matched c8: nothing provisional
            leads.app.repository.get(account_id(provisional_key("hooli.dev")))
