"""Account MQA decisions on the `lead-decisions` topic, over a real PostgreSQL and a real
Kafka-protocol broker (Tansu), read back with confluent-kafka: the projector records the MQA
on the account with its outbox row, the relay publishes exactly those bytes (keyed by the
account id, valid against schemas/account.qualified.json), a second relay run publishes the
same bytes again, and a projector that stopped between recording the decision and writing
its rows does not record it twice."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from psycopg import sql

from engine.aggregates.account import Account, account_id
from engine.domain.accounts.scoring import MqaDecision
from engine.postgres import migrations, outbox
from engine.runtime import Runtime
from engine.services.application import EVENTS_TABLE
from engine.settings import Settings
from tests.factory import raw
from tests.integration.test_accounts import ingest, story, table
from tests.integration.test_identity_relay import _trigger
from tests.integration.test_outbox import by_id, outbox_rows, relay_all
from tests.integration.test_relay import read_all

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Draft202012Validator(json.loads((ROOT / "schemas" / "account.qualified.json").read_text()))


def test_an_mqa_reaches_the_topic_as_recorded(runtime: Runtime, kafka_settings: Settings) -> None:
    ingest(runtime, story())
    account: Account = runtime.app.repository.get(account_id("a1"))
    assert account.mqa is not None
    rows = outbox_rows(runtime)
    [row] = [r for r in rows if r[3] == "account.qualified"]
    assert (row[1], row[2], row[4]) == (account.id, account.mqa["version"], "a1")

    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    first = by_id(read_all(bootstrap, relay_all(runtime, bootstrap), len(rows)))
    again = by_id(read_all(bootstrap, relay_all(runtime, bootstrap), len(rows)))
    assert len(first) == len(rows) and first == again  # the same bytes, key and partition
    key, value, _ = first[f"{account.id}:{account.mqa['version']}"]
    assert key == b"a1" and value.decode() == row[5]
    doc = json.loads(value)
    SCHEMA.validate(doc)
    assert doc["type"] == "account.qualified" and doc["subject"] == "a1"
    assert doc["data"]["trigger_event_id"] == account.mqa["trigger"]
    assert doc["data"]["occurred_at"] == account.mqa["at"]
    assert (doc["data"]["members"], doc["data"]["engaged"], doc["data"]["score"]) == (2, 2, 85)
    assert not any(
        json.loads(v)["type"] == "account.qualified"
        for k, (_, v, _) in first.items()
        if k != doc["id"]
    )


def test_a_decision_recorded_before_a_crash_is_not_recorded_again(runtime: Runtime) -> None:
    """The projector records the MQA, then its read-model transaction fails: the next
    settling finds the decision on the account and keeps it (one event, one outbox row)."""
    ingest(runtime, story()[:3])  # the accounts only: nobody qualifies yet
    at = datetime.fromisoformat(story()[0]["time"])
    early = MqaDecision("a1", runtime.rules.ref, "crm-1", at, "recorded first")
    stored: dict[str, Any] = runtime.app.record_account_decisions([(early, None)], [])["a1"]
    assert stored["trigger"] == "crm-1"
    later = MqaDecision("a1", runtime.rules.ref, "crm-2", at, "recorded second")
    again = runtime.app.record_account_decisions([(later, None)], [])  # once per account
    assert again == {"a1": stored}
    runtime.app.clear_cache()
    ingest(runtime, story()[3:])  # a1 qualifies now: the recorded decision stands
    account: Account = runtime.app.repository.get(account_id("a1"))
    assert account.mqa == stored
    assert [r[3] for r in outbox_rows(runtime)].count("account.qualified") == 1
    [scores] = table(runtime, "account_scores", "WHERE account_key = 'a1'")
    assert scores[8:10] == (at, "crm-1")  # the read model shows the recorded one


def test_migration_22_adds_the_column_and_the_account_topics_and_keeps_old_mqas(
    runtime: Runtime,
) -> None:
    """A store as migration 18 left it: no account_state.mqa, a trigger without the account
    topics. Migration 22 adds both; the account's recorded MQA shows again once its stream is
    projected. (An MQA taken before decisions were recorded is recorded by the next settling,
    moment kept: tests/unit/test_account_book.py.)"""
    ingest(runtime, story())
    schema = runtime.db.schema
    [before] = table(runtime, "account_scores", "WHERE account_key = 'a1'")
    topics = [
        "engine.aggregates.account:Account.Qualified",
        "engine.aggregates.account:Account.MemberDecided",
    ]
    old_topics = [t for t in outbox.decision_topics() if t not in topics]
    assert len(old_topics) == len(outbox.decision_topics()) - 2
    with runtime.db.connect() as conn:  # as the previous version left the store
        conn.execute(outbox.drop_check_trigger(schema, EVENTS_TABLE))
        for statement in outbox.check_statements(schema, EVENTS_TABLE, old_topics):
            conn.execute(statement)
        conn.execute(
            sql.SQL("ALTER TABLE {} DROP COLUMN mqa").format(
                sql.Identifier(schema, "account_state")
            )
        )
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 22").format(
                sql.Identifier(schema, migrations.TABLE)
            )
        )
    assert not any(t in _trigger(runtime) for t in topics)
    assert [m.version for m in migrations.migrate(runtime.db)] == [22]
    assert all(t in _trigger(runtime) for t in topics)
    [after] = table(runtime, "account_state", "WHERE account_key = 'a1'")
    assert after[-1] is None  # the column is new
    ingest(runtime, [raw("account.updated", "a1", {"tier": 1}, days=8)])
    account: Account = runtime.app.repository.get(account_id("a1"))
    [after] = table(runtime, "account_state", "WHERE account_key = 'a1'")
    assert account.mqa is not None and after[-1] == account.mqa
    [scores] = table(runtime, "account_scores", "WHERE account_key = 'a1'")
    assert scores[8:12] == before[8:12]  # the same MQA, recorded once
    with runtime.db.connect() as conn:
        n = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE type = 'account.qualified'").format(
                sql.Identifier(schema, outbox.TABLE)
            )
        ).fetchone()
    assert n == (1,)
