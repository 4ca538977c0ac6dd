"""The transactional outbox on a real PostgreSQL and a real Kafka-protocol broker (Tansu),
read back with confluent-kafka: each decision's record is written with its event, exactly as
the log path would publish it; a failure between the broker's ack and the position's commit
publishes nothing twice; history older than the outbox is relayed from the log."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.decisions import encode, mql_reasons
from engine.domain.generator import generate
from engine.kafka import relay
from engine.kafka.publish import ensure_topic
from engine.kafka.relay import Relay, producer
from engine.postgres import outbox
from engine.postgres.db import Database
from engine.runtime import Runtime
from engine.settings import Settings
from tests.integration.test_relay import check_stream, ingest, read_all, stored_decisions


def outbox_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    query = sql.SQL(
        "SELECT notification_id, lead_id, version, type, key, value FROM {} "
        "ORDER BY notification_id"
    ).format(sql.Identifier(runtime.db.schema, outbox.TABLE))
    with runtime.db.connect() as conn:
        return list(conn.execute(query).fetchall())


def relay_all(runtime: Runtime, bootstrap: str, *, from_log: bool = False, **kw: Any) -> str:
    """Relay the whole log to a fresh topic; returns the topic."""
    topic = f"o-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 4)
    out = producer(bootstrap)
    try:
        Relay(runtime.app, runtime.db, out, topic, runtime.rules, from_log=from_log, **kw).run()
    finally:
        out.close()
    return topic


def by_id(records: list[Any]) -> dict[str, tuple[bytes, bytes, int]]:
    return {json.loads(m.value())["id"]: (m.key(), m.value(), m.partition()) for m in records}


def test_each_decision_is_in_the_outbox_as_the_log_path_publishes_it(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(120, seed=31)
    ingest(runtime, leads=120, seed=31)
    lead = next(e["subject"] for e in events if e["type"] == "touch.form_submitted")
    forgotten = runtime.app.forget(lead, reason="ticket 9", by="dpo", at=datetime.now(UTC))
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    rows = outbox_rows(runtime)
    # one row per decision event, at its notification id, nothing else
    assert sorted(f"{r[1]}:{r[2]}" for r in rows) == sorted(i for v in expected.values() for i in v)
    assert {r[3] for r in rows} >= {"lead.qualified", "lead.routed", "lead.erased"}
    mine = [r for r in rows if r[1] == forgotten.lead_id]
    assert len(mine) > 1 and {r[4] for r in mine} == {forgotten.pseudonym}
    assert all(lead not in r[4] and lead not in r[5] for r in rows)  # no key of it anywhere
    assert all(json.loads(r[5])["subject"] == r[4] for r in rows)

    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    from_outbox = read_all(bootstrap, relay_all(runtime, bootstrap), total)
    from_log = read_all(bootstrap, relay_all(runtime, bootstrap, from_log=True), total)
    assert check_stream(from_outbox, expected) == {"unique": total, "duplicates": 0}
    # the same bytes, key and partition as decoding and folding the log gives (MQL reasons
    # taken at the decision, the forgotten lead under its pseudonym)
    assert by_id(from_outbox) == by_id(from_log)


def test_a_failure_between_the_ack_and_the_commit_publishes_nothing_twice(
    runtime: Runtime, kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(runtime, leads=200, seed=32)
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    topic = f"o-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 4)
    commit = Relay._commit
    calls = {"n": 0}

    def failing(self: Relay, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] in (3, 5):  # acknowledged by the broker, not marked
            raise psycopg.OperationalError("connection lost (forced)")
        commit(self, *args)

    monkeypatch.setattr(Relay, "_commit", failing)
    out = producer(bootstrap)
    first = Relay(runtime.app, runtime.db, out, topic, runtime.rules, batch_size=60)
    with pytest.raises(psycopg.OperationalError):
        first.run()
    marked = relay.positions(runtime.db)[topic]
    marked_rows = sum(1 for r in outbox_rows(runtime) if r[0] <= marked)
    in_topic = len(read_all(bootstrap, topic, marked_rows + 1, timeout=10))
    assert in_topic > marked_rows  # records the position does not cover are in the topic
    with pytest.raises(psycopg.OperationalError):
        first.run()  # the service's retry: the same relay goes on, and fails once more
    out.close()
    out = producer(bootstrap)
    try:  # a restart: a new relay
        Relay(runtime.app, runtime.db, out, topic, runtime.rules, batch_size=60).run()
    finally:
        out.close()
    assert relay.positions(runtime.db)[topic] == runtime.app.recorder.max_notification_id()
    records = read_all(bootstrap, topic, total)
    assert check_stream(records, expected) == {"unique": total, "duplicates": 0}


def test_history_recorded_before_the_outbox_is_relayed_from_the_log(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    ingest(runtime, leads=60, seed=33)
    with runtime.db.connect() as conn:  # as if recorded before migration 15
        head = runtime.app.recorder.max_notification_id()
        conn.execute(
            sql.SQL("UPDATE {} SET complete_from = %s").format(
                sql.Identifier(runtime.db.schema, outbox.START_TABLE)
            ),
            (head + 1,),
        )
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(runtime.db.schema, "outbox")))
    more = [validate_event(e) for e in generate(90, seed=33)[-400:]]  # later facts, some new
    runtime.app.ingest(more)
    assert outbox_rows(runtime) and min(r[0] for r in outbox_rows(runtime)) > head
    expected = stored_decisions(runtime)
    total = sum(map(len, expected.values()))
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    records = read_all(bootstrap, relay_all(runtime, bootstrap, batch_size=100), total)
    assert check_stream(records, expected) == {"unique": total, "duplicates": 0}
    from_log = read_all(bootstrap, relay_all(runtime, bootstrap, from_log=True), total)
    assert by_id(records) == by_id(from_log)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=st.text(min_size=1, max_size=40), reason=st.text(max_size=40))
def test_erasure_rewrites_the_subject_and_nothing_else(
    database: Database, key: str, reason: str
) -> None:
    """Whatever the key and the data hold (quotes, backslashes, `"subject":` itself), the
    rewrite in PostgreSQL changes the top-level subject only."""
    doc = {
        "specversion": "1.0",
        "id": f"{uuid.uuid4()}:3",
        "source": "leadengine",
        "type": "lead.routed",
        "subject": key,
        "data": {"why": reason, "subject": key, "note": outbox.subject_field(key)},
    }
    pseudonym = "erased-0123456789ab"
    with psycopg.connect(database.conninfo(), autocommit=True) as conn:
        [(value,)] = conn.execute(
            "SELECT regexp_replace(%s, %s, %s)",
            (encode(doc), outbox.SUBJECT, outbox.subject_field(pseudonym)),
        ).fetchall()
    assert json.loads(value) == doc | {"subject": pseudonym}
    assert value == encode(doc | {"subject": pseudonym})


def test_a_writer_without_the_outbox_cannot_commit_a_decision(runtime: Runtime) -> None:
    """A writer older than migration 15 (here: the outbox switched off) during a rolling
    upgrade: its transaction fails, saying why, and records nothing."""
    events = [validate_event(e) for e in generate(20, seed=34)]
    runtime.app.outbox = False
    with pytest.raises(Exception, match="without its outbox row: this writer predates migration"):
        runtime.app.ingest(events)
    assert not runtime.app.recorder.max_notification_id()
    runtime.app.outbox = True
    runtime.app.ingest(events)
    assert outbox_rows(runtime)


def test_an_mqls_reasons_are_those_of_the_decision_not_of_the_batchs_end(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    """One transaction holds a lead's MQL and later facts dated before it (seed 34 has such a
    lead): the record's reasons are the score's at the decision, as folding the log up to it
    gives, not the lead's at the end of the batch."""
    runtime.app.ingest([validate_event(e) for e in generate(120, seed=34)])  # one batch
    qualified = {f"{r[1]}:{r[2]}": r[5] for r in outbox_rows(runtime) if r[3] == "lead.qualified"}
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    total = len(outbox_rows(runtime))
    from_log = by_id(read_all(bootstrap, relay_all(runtime, bootstrap, from_log=True), total))
    assert qualified and {i: from_log[i][1].decode() for i in qualified} == qualified
    differs = []  # the scenario is there: folded to the batch's end, other reasons
    for ident, value in qualified.items():
        lead_id, version = UUID(ident.split(":")[0]), int(ident.split(":")[1])
        [event] = runtime.app.repository.event_store.get(lead_id, gt=version - 1, lte=version)
        end = runtime.app.repository.get(lead_id)
        stored = json.loads(value)["data"]["reasons"]
        differs += [ident] if mql_reasons(event, end, runtime.rules) != stored else []
    assert len(differs) >= 1
