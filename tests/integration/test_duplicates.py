"""Engine-detected duplicates over a real PostgreSQL (docs/identity.md#duplicates): a suggest
rule records an open pair that `report duplicates` lists, a merge rule records an engine merge
the read model folds into one person and lead.unmerged undoes, forget purges the person's
hashes and pairs, and no table holds the matched value in clear."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from psycopg import sql

from engine.domain.contract import Envelope, validate_event
from engine.domain.rules import DuplicateRule, Identity, Rules
from engine.postgres import db as dbmod
from engine.readmodel import read_schema
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import raw

EMAIL = "Grace.Hopper+Q1@Navy.example"
PHONE = "+1 (202) 555-0147"


def captured(key: str, day: int, email: str = EMAIL, phone: str | None = None) -> Envelope:
    data: dict[str, Any] = {"email": email, "name": "Grace"}
    if phone is not None:
        data["phone"] = phone
    at = datetime(2026, 3, 1 + day, 9, tzinfo=UTC)
    return validate_event(raw("lead.captured", key, data, at=at, id=f"cap-{key}"))


def unmerged(key: str, winner: str) -> Envelope:
    data = {"winner": winner, "by": "crm-admin", "reason": "two people"}
    at = datetime(2026, 3, 9, tzinfo=UTC)
    return validate_event(raw("lead.unmerged", key, data, at=at, id=f"un-{key}"))


def pairs(rt: Runtime) -> list[tuple[Any, ...]]:
    view = sql.Identifier(read_schema(rt.db.schema), "duplicate_suggestions")
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL(
                "SELECT rule, match, action, winner_id, loser_id, winner_person_id, "
                "loser_person_id, state FROM {} ORDER BY suggested_at"
            ).format(view)
        ).fetchall()


def hashes(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL("SELECT match, hash, lead_id FROM {} ORDER BY lead_id").format(
                sql.Identifier(rt.db.schema, "duplicate_keys")
            )
        ).fetchall()


@pytest.fixture
def merging(settings: Settings, database: dbmod.Database, rules: Rules) -> Iterator[Runtime]:
    merge = rules.model_copy(
        update={
            "identity": Identity(
                duplicates=(
                    DuplicateRule(name="same-email", match="email", action="suggest"),
                    DuplicateRule(name="same-phone", match="phone", action="merge"),
                )
            )
        }
    )
    with open_runtime(settings, rules=merge, database=database) as rt:
        yield rt


def test_suggest_rule_lists_an_open_pair_in_report_duplicates(
    runtime: Runtime, leadengine: Any
) -> None:
    # the younger key arrives first: the older one still wins
    runtime.app.ingest([captured("grace-web", 2, email="grace.hopper+q1@navy.EXAMPLE")])
    runtime.app.ingest([captured("grace-crm", 0), captured("other", 1, email="x@navy.example")])
    runtime.projector.run(until_caught_up=True)
    crm, web = runtime.app.lead_id("grace-crm"), runtime.app.lead_id("grace-web")
    assert pairs(runtime) == [("same-email", "email", "suggest", crm, web, crm, web, "open")]
    assert runtime.app.identity_map().people() == {}  # a suggestion joins nobody
    code, out = leadengine("report", "duplicates", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["open"] == {"same-email": 1}
    (s,) = doc["suggestions"]
    assert (s["winner_id"], s["loser_id"], s["match"]) == (str(crm), str(web), "email")
    assert s["rules_version"] == "default@2026.1"
    assert doc["by_period"] == [
        {
            "period": "2026-03-02",
            "rule": "same-email",
            "open": 1,
            "merged": 0,
            "unmerged": 0,
            "superseded": 0,
            "dismissed": 0,
        }
    ]
    code, out = leadengine("report", "duplicates", "--from", "2026-03-04", "--format", "json")
    assert (code, json.loads(out)["open"]) == (0, {})  # the pair is dated Mar 3
    code, out = leadengine("report", "duplicates", "--occurred-by", "2026-03-03T10:00:00Z")
    assert code == 0 and "same-email 1" in out
    code, out = leadengine("report", "duplicates")
    assert code == 0 and "Open duplicate suggestions" in out and "same-email 1" in out
    assert EMAIL.lower() not in out.lower()
    # upstream merges the pair: the suggestion is taken; an unmerge of it takes it apart
    data = {"winner": "grace-crm", "by": "crm-admin", "reason": "same person"}
    at = datetime(2026, 3, 8, tzinfo=UTC)
    runtime.app.ingest([validate_event(raw("lead.merged", "grace-web", data, at=at, id="m-1"))])
    assert [p[-1] for p in pairs(runtime)] == ["merged"]
    runtime.app.ingest([unmerged("grace-web", "grace-crm")])
    assert [p[-1] for p in pairs(runtime)] == ["unmerged"]
    code, out = leadengine("report", "duplicates", "--format", "json")
    assert json.loads(out)["open"] == {}


def test_merge_rule_makes_one_person_and_unmerge_takes_it_apart(merging: Runtime) -> None:
    rt = merging
    rt.app.ingest([captured("ada", 0, email="ada@x.example", phone=PHONE)])
    rt.app.ingest([captured("ada-2", 1, email="ada2@x.example", phone="+12025550147")])
    rt.projector.run(until_caught_up=True)
    ada, ada2 = rt.app.lead_id("ada"), rt.app.lead_id("ada-2")
    assert pairs(rt) == [("same-phone", "phone", "merge", ada, ada2, ada, ada, "merged")]
    (link,) = rt.app.get_lead("ada-2").links
    assert (link.relation, link.other_id, link.by) == ("merged", ada, "leadengine")
    assert link.reason == "duplicate rule same-phone (rules default@2026.1): same phone"
    view = sql.Identifier(read_schema(rt.db.schema), "identity_links")
    with rt.db.connect() as conn:
        rows = conn.execute(sql.SQL("SELECT lead_key, kind, by FROM {}").format(view)).fetchall()
    assert rows == [("ada-2", "merged", "leadengine")]
    rt.app.ingest([unmerged("ada-2", "ada")])
    rt.projector.run(until_caught_up=True)
    assert pairs(rt) == [("same-phone", "phone", "merge", ada, ada2, ada, ada2, "unmerged")]
    assert rt.app.identity_map().people() == {}


def test_forget_purges_the_persons_hashes_and_pairs(merging: Runtime) -> None:
    rt = merging
    rt.app.ingest([captured("ada", 0, email="ada@x.example", phone=PHONE)])
    rt.app.ingest([captured("ada-2", 1, email="ada@x.example", phone=PHONE)])
    rt.app.ingest(
        [captured("bob", 0, email="bob@x.example"), captured("bob-2", 1, "bob@x.example")]
    )
    assert len(hashes(rt)) == 6 and len(pairs(rt)) == 3
    rt.app.forget("ada", reason="ticket 9", by="dpo", at=datetime(2026, 4, 1, tzinfo=UTC))
    ada, ada2 = rt.app.lead_id("ada"), rt.app.lead_id("ada-2")
    assert {row[2] for row in hashes(rt)} == {rt.app.lead_id("bob"), rt.app.lead_id("bob-2")}
    assert [p[0] for p in pairs(rt)] == ["same-email"]  # bob's pair only
    assert not any({ada, ada2} & {p[3], p[4]} for p in pairs(rt))


def test_no_table_holds_the_matched_values_in_clear(merging: Runtime) -> None:
    rt = merging
    rt.app.ingest([captured("grace", 0, phone=PHONE), captured("grace-2", 1, phone=PHONE)])
    rt.projector.run(until_caught_up=True)
    assert len(pairs(rt)) == 2  # both rules found the pair
    values = [EMAIL, EMAIL.lower(), "grace.hopper", PHONE, "+12025550147", "2025550147"]
    needles = [v.lower() for v in values] + [v.encode().hex() for v in values]
    with rt.db.connect() as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
            (rt.db.schema,),
        ).fetchall()
        assert ("duplicate_keys",) in [(t,) for _, t in tables]
        for schema, table in tables:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, table))
            text = "\n".join(r[0] for r in conn.execute(query)).lower()
            for needle in needles:
                assert needle not in text, f"{table} holds {needle!r}"


def test_one_batch_in_any_order_decides_as_facts_one_by_one(merging: Runtime) -> None:
    """The PostgreSQL index decides a batch in one round trip as if its facts came one by one:
    the same pairs and people for keys told in time order one by one and reversed in a batch."""
    rt = merging
    days, mail = [2, 0, 3, 1], ["p@{}.example", "p@{}.example", "q@{}.example", "p@{}.example"]
    tel = ["+1 555", "+1 777", "+1 777", "+1555"]
    suffix = {"one": "1", "two": "2"}  # the two groups' phones never meet

    def events(group: str) -> list[Envelope]:
        return [
            captured(
                f"{group}{n}", days[n], email=mail[n].format(group), phone=tel[n] + suffix[group]
            )
            for n in range(4)
        ]

    for e in events("one"):
        rt.app.ingest([e])
    rt.app.ingest(list(reversed(events("two"))))
    names = {rt.app.lead_id(f"{g}{n}"): (g, n) for g in ("one", "two") for n in range(4)}

    def decided(group: str) -> tuple[Any, ...]:
        rows = sorted(
            (rule, names[w][1], names[lo][1], state)
            for rule, _, _, w, lo, _, _, state in pairs(rt)
            if names[w][0] == group and state != "superseded"
        )
        people = sorted(
            sorted(names[m][1] for m in members)
            for members in rt.app.identity_map().people().values()
            if names[members[0]][0] == group
        )
        return rows, people

    assert decided("one") == decided("two")
    rows, people = decided("one")
    assert ("same-email", 1, 3, "open") in rows and people == [[0, 3], [1, 2]]
