"""Identity decisions on the `lead-decisions` topic, over a real PostgreSQL and a real
Kafka-protocol broker (Tansu), read back with confluent-kafka: a merge and its unmerge arrive
in order on their lead with exact payloads, the outbox and the log path publish the same
bytes, a forgotten person's identity decisions name nobody, and a store migrated before
identity decisions were outbound (migration 18) gets them relayed and its trigger updated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from psycopg import sql

from engine.aggregates.lead import Lead
from engine.domain.leadids import pseudonym
from engine.postgres import migrations, outbox
from engine.runtime import Runtime
from engine.services.application import EVENTS_TABLE
from engine.settings import Settings
from tests.integration.test_outbox import by_id, outbox_rows, relay_all
from tests.integration.test_relay import check_stream, read_all, stored_decisions
from tests.unit.test_stitching import EMAIL, anonymous_journey, duplicate, link, merged, unmerged

ROOT = Path(__file__).resolve().parents[2]
KIND = "lead.identity_decided"
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / f"{KIND}.json").read_text()))


def linked_events(runtime: Runtime, key: str) -> list[Lead.Linked]:
    lead = runtime.app.get_lead(key)
    events = runtime.app.repository.event_store.get(lead.id)
    return [e for e in events if isinstance(e, Lead.Linked)]


def relayed(runtime: Runtime, kafka_settings: Settings) -> tuple[list[Any], list[Any]]:
    """Every decision relayed twice, to two new topics: from the outbox and from the log;
    both checked complete, in stored order per lead, without duplicates."""
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    from_outbox = read_all(bootstrap, relay_all(runtime, bootstrap), total)
    from_log = read_all(bootstrap, relay_all(runtime, bootstrap, from_log=True), total)
    for records in (from_outbox, from_log):
        assert check_stream(records, expected) == {"unique": total, "duplicates": 0}
    return from_outbox, from_log


def test_a_merge_and_its_unmerge_reach_the_topic_in_order_with_exact_payloads(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    runtime.app.ingest([unmerged()])
    from_outbox, from_log = relayed(runtime, kafka_settings)
    assert by_id(from_outbox) == by_id(from_log)  # the same bytes, key and partition

    ada, loser, cookie = (runtime.app.get_lead(k).id for k in ("ada", "ada-2", "cookie-1"))
    merge, unmerge = linked_events(runtime, "ada-2")
    [linking] = linked_events(runtime, "cookie-1")
    assert linked_events(runtime, "ada") == []  # nothing is written on the other lead

    def doc(lead_id: Any, key: str, event: Lead.Linked, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"{lead_id}:{event.originator_version}",
            "source": "leadengine",
            "type": KIND,
            "subject": key,
            "time": event.timestamp.isoformat(),
            "datacontenttype": "application/json",
            "data": {"lead_id": str(lead_id), "version": event.originator_version, **data},
        }

    common = {"other_id": str(ada), "source": "urn:test", "by": "crm-admin", "subject_wins": False}
    expected = [
        doc(cookie, "cookie-1", linking, {"relation": "linked", "other_id": str(ada),
            "event_id": "l1", "source": "urn:test", "by": None,
            "occurred_at": linking.occurred_at.isoformat(), "subject_wins": False}),
        doc(loser, "ada-2", merge, {"relation": "merged", **common, "event_id": "m1",
            "occurred_at": merge.occurred_at.isoformat()}),
        doc(loser, "ada-2", unmerge, {"relation": "unmerged", **common, "event_id": "u1",
            "occurred_at": unmerge.occurred_at.isoformat()}),
    ]  # fmt: skip
    mine = [m for m in from_outbox if json.loads(m.value())["type"] == KIND]
    assert sorted((json.loads(m.value()) for m in mine), key=lambda d: d["id"]) == sorted(
        expected, key=lambda d: d["id"]
    )
    # the merge before the unmerge: one partition, increasing offsets, keyed by the lead key
    merge_msg, unmerge_msg = (m for m in mine if m.key() == b"ada-2")
    assert json.loads(merge_msg.value()) == expected[1]
    assert json.loads(unmerge_msg.value()) == expected[2]
    assert merge_msg.partition() == unmerge_msg.partition()
    assert merge_msg.offset() < unmerge_msg.offset()
    assert merge.originator_version < unmerge.originator_version
    for m in mine:
        SCHEMA.validate(json.loads(m.value()))
    # the merge's winner key is personal: it never appears in the data
    assert all(b'"ada"' not in m.value() for m in mine)


def test_a_forgotten_persons_identity_decisions_carry_no_personal_data(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    at = runtime.app.get_lead("ada").modified_on
    forgotten = runtime.app.forget("cookie-1", reason="ticket 9", by="dpo", at=at)
    assert len(forgotten.members) == 2  # the alias, Ada and her duplicate: one person
    runtime.app.ingest([unmerged()])  # an unmerge after the erasure: under the pseudonym too
    ids = {runtime.app.get_lead(k).id for k in ("ada", "ada-2", "cookie-1")}
    assert len(ids) == 3
    from_outbox, from_log = relayed(runtime, kafka_settings)
    assert by_id(from_outbox) == by_id(from_log)
    identity = [m for m in from_outbox if json.loads(m.value())["type"] == KIND]
    assert len(identity) == 3
    assert {json.loads(m.value())["data"]["relation"] for m in identity} == {
        "linked",
        "merged",
        "unmerged",
    }
    personal = [b"ada", b"cookie-1", EMAIL.encode(), b"Ada", b"form fill", b"same person"]
    for m in identity:
        d = json.loads(m.value())
        lead_id = d["data"]["lead_id"]
        assert d["subject"] == pseudonym(next(i for i in ids if str(i) == lead_id))
        assert m.key() == d["subject"].encode()
        value = m.value().replace(d["subject"].encode(), b"")
        assert not [p for p in personal if p in value], value
        SCHEMA.validate(d)
    for row in outbox_rows(runtime):  # and nothing of it stays in the outbox either
        assert row[4].startswith("erased-") or row[1] not in ids
        assert not [p for p in personal if p.decode() in row[5].replace(row[4], "")]


def _trigger(runtime: Runtime) -> str:
    with runtime.db.connect() as conn:
        row = conn.execute(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'outbox_complete' "
            "AND tgrelid = %s::regclass",
            (f'"{runtime.db.schema}"."{EVENTS_TABLE}"',),
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_migration_18_updates_the_trigger_and_relays_identity_decisions_recorded_before(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    """A store at migration 15 whose writer did not know identity decisions as outbound:
    their outbox rows are missing and the trigger's list lacks them. Migration 18 makes the
    trigger again with today's list and lets the relay take them from the log."""
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    linked_topic = "engine.aggregates.lead:Lead.Linked"
    schema = runtime.db.schema
    old_topics = [t for t in outbox.decision_topics() if t != linked_topic]
    with runtime.db.connect() as conn:  # as the previous version left the store
        conn.execute(outbox.drop_check_trigger(schema, EVENTS_TABLE))
        for statement in outbox.check_statements(schema, EVENTS_TABLE, old_topics):
            conn.execute(statement)
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE type = %s").format(sql.Identifier(schema, outbox.TABLE)),
            (KIND,),
        ).rowcount
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 18").format(
                sql.Identifier(schema, migrations.TABLE)
            )
        )
    assert deleted == 2 and linked_topic not in _trigger(runtime)
    head = runtime.app.recorder.max_notification_id()
    assert [m.version for m in migrations.migrate(runtime.db)] == [18]
    assert linked_topic in _trigger(runtime)
    with runtime.db.connect() as conn:
        assert outbox.complete_from(conn, schema) == head + 1
    runtime.app.ingest([unmerged()])  # recorded after: in the outbox
    assert [r[3] for r in outbox_rows(runtime) if r[0] > head].count(KIND) == 1
    from_outbox, _ = relayed(runtime, kafka_settings)
    kinds = [json.loads(m.value())["data"].get("relation") for m in from_outbox]
    assert sorted(k for k in kinds if k) == ["linked", "merged", "unmerged"]


def test_migration_18_leaves_the_outbox_start_where_nothing_is_missing(runtime: Runtime) -> None:
    runtime.app.ingest([*anonymous_journey(), link()])
    with runtime.db.connect() as conn:
        before = outbox.complete_from(conn, runtime.db.schema)
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 18").format(
                sql.Identifier(runtime.db.schema, migrations.TABLE)
            )
        )
    assert [m.version for m in migrations.migrate(runtime.db)] == [18]
    with runtime.db.connect() as conn:
        assert outbox.complete_from(conn, runtime.db.schema) == before


@pytest.mark.parametrize("relation", ["merged", "unmerged"])
def test_a_writer_without_the_outbox_cannot_commit_an_identity_decision(
    runtime: Runtime, relation: str
) -> None:
    """The trigger covers identity decisions: a writer that records one without its outbox
    row (an older version during a rolling upgrade) fails and records nothing."""
    first = [merged()] if relation == "unmerged" else []
    runtime.app.ingest([*anonymous_journey(), *duplicate(), *first])
    head = runtime.app.recorder.max_notification_id()
    runtime.app.outbox = False
    fact = merged() if relation == "merged" else unmerged()
    with pytest.raises(Exception, match="without its outbox row"):
        runtime.app.ingest([fact])
    assert runtime.app.recorder.max_notification_id() == head
