"""Right to erasure on a real PostgreSQL (and a real Kafka-protocol broker): after `forget`, no
table, log line or read model holds the person's data, while history, scores, stages,
attribution and KPIs replay exactly as before and the hash chains still verify."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine.aggregates.lead import lead_id
from engine.consumers.kafka import KafkaIngestor
from engine.generator import generate
from engine.privacy import KEYS_TABLE
from engine.runtime import Runtime
from engine.settings import Settings
from tests.kafka_helpers import publish


def _search(runtime: Runtime, needles: list[bytes]) -> list[str]:
    """Every (table.column) of the schema where any needle occurs, text or bytes."""
    hits: list[str] = []
    with runtime.db.connect() as conn:
        columns = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t USING (table_schema, table_name) "
            "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE'",
            (runtime.db.schema,),
        ).fetchall()
        assert len({t for t, _, _ in columns}) >= 10  # events, keys, chain, read models, ...
        for table, column, dtype in columns:
            col = sql.Identifier(column)
            if dtype == "bytea":
                cond = sql.SQL("position(%s::bytea IN {}) > 0").format(col)
            else:
                cond = sql.SQL("strpos(lower({}::text), lower(%s)) > 0").format(col)
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(
                sql.Identifier(runtime.db.schema, table), cond
            )
            for needle in needles:
                if dtype != "bytea":
                    try:
                        text = needle.decode()
                    except UnicodeDecodeError:
                        continue  # raw bytes (a key) can only sit in a bytea column
                row = conn.execute(query, (needle if dtype == "bytea" else text,)).fetchone()
                if row and row[0]:
                    hits.append(f"{table}.{column}")
    return hits


def _history(leadengine: Any, key: str) -> dict[int, tuple[Any, ...]]:
    code, out = leadengine("lead", "history", key, "--format", "json")
    assert code == 0
    return {r["version"]: (r["score"], r["stage"], r["owner"]) for r in json.loads(out)}


def _reports(leadengine: Any) -> tuple[str, str]:
    code, attribution = leadengine("report", "attribution", "--model", "all", "--format", "json")
    assert code == 0
    code, kpis = leadengine("report", "kpis", "--format", "json")
    assert code == 0
    return attribution, kpis


def _lead_state(runtime: Runtime, key: str) -> dict[str, Any]:
    with runtime.db.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} WHERE lead_key = %s").format(
                sql.Identifier(runtime.db.schema, "lead_state")
            ),
            (key,),
        )
        cols = [d.name for d in cur.description or ()]
        row = cur.fetchone()
    assert row is not None
    return dict(zip(cols, row, strict=True))


def test_forget_leaves_no_trace_and_every_number_replays(
    runtime: Runtime, leadengine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADENGINE_LOG_LEVEL", "DEBUG")  # every log line the engine can write
    events = generate(60, seed=11)
    won = [e["subject"] for e in events if e["type"] == "deal.won"]
    key = won[0]
    person = next(e["data"] for e in events if e["type"] == "lead.captured" and e["subject"] == key)
    other = next(
        e["subject"] for e in events if e["type"] == "lead.captured" and e["subject"] != key
    )
    needles = [person["email"].encode(), person["name"].encode(), person["phone"].encode()]
    bad = [  # rejected records: one carries the person's email, one is someone else's
        {**events[0], "id": "bad-1", "subject": key, "type": "touch.page_viewed",
         "data": {"channel": None, "email": person["email"]}},
        {**events[0], "id": "bad-2", "subject": other, "type": "touch.page_viewed", "data": {}},
    ]  # fmt: skip
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in [*events, *bad]))
    code, _ = leadengine("ingest", str(path))
    assert code == 0
    assert runtime.deadletters.count() == 2

    history, reports, state = (
        _history(leadengine, key),
        _reports(leadengine),
        _lead_state(runtime, key),
    )
    assert state["stage"] == "customer"
    with runtime.db.connect() as conn:
        (wrapped,) = conn.execute(
            sql.SQL("SELECT wrapped FROM {} WHERE lead_id = %s").format(
                sql.Identifier(runtime.db.schema, KEYS_TABLE)
            ),
            (lead_id(key),),
        ).fetchone() or (None,)
    assert wrapped is not None
    # Sealed at rest from the start: only the dead letter holds the email in clear.
    assert set(_search(runtime, needles)) == {"dead_letters.raw"}

    code, out = leadengine(
        "forget", key, "--reason", "GDPR request 42", "--by", "dpo", "--format", "json"
    )
    assert code == 0, out
    result = json.loads(out)
    assert result["erased"] and result["key_shredded"] and result["dead_letters_purged"] == 1

    assert _search(runtime, [*needles, bytes(wrapped)]) == []
    assert runtime.deadletters.count() == 1  # the other lead's dead letter is kept
    logs = "".join(leadengine.stderr)
    assert "lead forgotten" in logs and not any(n.decode().lower() in logs.lower() for n in needles)

    after = _history(leadengine, key)
    assert {v: after[v] for v in history} == history  # every score, stage and owner as before
    assert len(after) == len(history) + 1  # ... plus the Erased event
    assert _reports(leadengine) == reports
    state_after = _lead_state(runtime, key)
    assert state_after.pop("erased_at") is not None
    state.pop("erased_at")
    assert {k: v for k, v in state_after.items() if k != "version"} == {
        k: v for k, v in state.items() if k != "version"
    }
    code, out = leadengine("lead", "show", key, "--format", "json")
    shown = json.loads(out)
    assert shown["email"] == "(erased)" and shown["name"] == "(erased)"
    assert shown["profile"]["email_domain"] == person["email"].rsplit("@", 1)[1]
    code, out = leadengine("verify", "--format", "json")
    assert code == 0 and json.loads(out)["ok"]
    code, out = leadengine("lead", "export", key)
    assert code == 0 and not any(n.decode() in out for n in needles)

    code, out = leadengine("forget", key, "--reason", "GDPR request 42", "--format", "json")
    assert code == 0 and json.loads(out)["already_forgotten"]


def test_events_arriving_from_kafka_after_forget_are_kept_without_personal_data(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    events = generate(8, seed=3)
    key = next(e["subject"] for e in events if e["type"] == "lead.captured")
    person = next(e for e in events if e["type"] == "lead.captured" and e["subject"] == key)
    email = person["data"]["email"]
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    publish(bootstrap, kafka_settings.kafka_topic, events)
    ingestor = KafkaIngestor(runtime.app, kafka_settings)
    ingestor.run(stop=threading.Event(), until_caught_up=True)
    before = runtime.app.get_lead(key).current_score(runtime.rules)

    runtime.app.forget(key, reason="ticket 9", by="dpo", at=person_time(person))
    again = [  # upstream still sends: the form again (with the email) and a call with notes
        {**person, "id": "late-1", "time": "2026-12-01T10:00:00Z"},
        {**person, "id": "late-2", "time": "2026-12-01T11:00:00Z", "type": "touch.call_logged",
         "data": {"channel": "sales", "direction": "inbound", "outcome": "connected",
                  "rep": "rep-1", "notes": f"wants a demo, write to {email}"}},
    ]  # fmt: skip
    publish(bootstrap, kafka_settings.kafka_topic, again)
    stats = KafkaIngestor(runtime.app, kafka_settings).run(
        stop=threading.Event(), until_caught_up=True
    )
    assert stats.as_dict()["dead_lettered"] == 0
    runtime.app.clear_cache()
    lead = runtime.app.get_lead(key)
    assert {"late-1", "late-2"} <= {event_id for _, event_id in lead.seen}
    late = [f for f in lead.facts if f.event_id.startswith("late-")]
    assert late[0].data["_erased"] == ["email", "name", "phone"]
    assert late[1].data["_erased"] == ["notes"] and late[1].data["rep"] == "rep-1"
    assert runtime.app.get_lead(key).current_score(runtime.rules, before.as_of).total == (
        before.total
    )
    runtime.projector.run()
    assert _search(runtime, [email.encode(), b"wants a demo"]) == []


def person_time(event: dict[str, Any]) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
