"""Right to erasure on a real PostgreSQL (and a real Kafka-protocol broker): after `forget`, no
table, log line or read model holds the person's data, while history, scores, stages,
attribution and KPIs replay exactly as before and the hash chains still verify."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.utils import get_topic
from psycopg import sql

from engine.aggregates.lead import Lead
from engine.aggregates.routing import RoutingQueue
from engine.consumers.kafka import KafkaIngestor
from engine.domain.contract import validate_event
from engine.domain.errors import LeadEngineError
from engine.domain.generator import generate
from engine.domain.leadids import SCHEME_TABLE, UUID5, LeadIds, legacy_lead_id
from engine.postgres.keystore import KEYS_TABLE
from engine.projections.rebuild import rebuild
from engine.readmodel import read_schema
from engine.runtime import Runtime, open_runtime
from engine.services.application import LeadEngine
from engine.settings import Settings
from tests.factory import raw
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


def _not_found_by_key(leadengine: Any, key: str) -> None:
    """After `forget`, every per-lead command answers for the key the person had exactly as
    for a key that never was: nothing tells the person was a lead (docs/audit.md)."""
    never = "never-a-lead-0001"
    for command in (("lead", "show"), ("lead", "history"), ("lead", "explain"),
                    ("lead", "export"), ("verify",)):  # fmt: skip
        extra = ("--as-of", "2999-01-01") if command[-1] in ("show", "explain") else ()
        code, _ = leadengine(*command, key, *extra)
        refused = leadengine.stderr[-1]
        assert code == 2 and f"no lead with key {key!r}" in refused, (command, refused)
        assert leadengine(*command, never, *extra)[0] == 2
        assert leadengine.stderr[-1].replace(never, key) == refused, command


def _reports(leadengine: Any) -> tuple[str, str]:
    code, attribution = leadengine("report", "attribution", "--model", "all", "--format", "json")
    assert code == 0
    code, kpis = leadengine("report", "kpis", "--format", "json")
    assert code == 0
    return attribution, kpis


def _lead_state(runtime: Runtime, key: str) -> dict[str, Any]:
    with runtime.db.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} WHERE lead_id = %s").format(
                sql.Identifier(runtime.db.schema, "lead_state")
            ),
            (runtime.app.lead_id(key),),
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
    assert code == 1  # done, with rejected lines
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
            (runtime.app.lead_id(key),),
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

    lead_id = str(runtime.app.lead_id(key))
    _not_found_by_key(leadengine, key)
    after = _history(leadengine, lead_id)  # an auditor with the lead id sees the history
    assert {v: after[v] for v in history} == history  # every score, stage and owner as before
    assert len(after) == len(history) + 1  # ... plus the Erased event
    assert _reports(leadengine) == reports
    state_after = _lead_state(runtime, key)
    assert state_after.pop("erased_at") is not None
    state.pop("erased_at")
    assert state_after.pop("lead_key") == f"erased-{runtime.app.lead_id(key).hex[:12]}"
    assert state.pop("lead_key") == key
    latest = ("version", "recorded_at")  # the row reflects the Erased event
    assert {k: v for k, v in state_after.items() if k not in latest} == {
        k: v for k, v in state.items() if k not in latest
    }
    code, out = leadengine("lead", "show", lead_id, "--format", "json")
    shown = json.loads(out)
    assert shown["email"] == "(erased)" and shown["name"] == "(erased)"
    assert shown["profile"]["email_domain"] == person["email"].rsplit("@", 1)[1]
    code, out = leadengine("verify", "--format", "json")
    assert code == 0 and json.loads(out)["ok"]
    code, out = leadengine("lead", "export", lead_id)
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


def _search_views(runtime: Runtime, needle: str) -> list[str]:
    """Every view (KPI views and the `<schema>_read` contract) that shows `needle`."""
    schemas = (runtime.db.schema, read_schema(runtime.db.schema))
    hits: list[str] = []
    with runtime.db.connect() as conn:
        views = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.views "
            "WHERE table_schema = ANY(%s)",
            (list(schemas),),
        ).fetchall()
        assert len(views) >= 10
        for schema, view in views:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {} v WHERE strpos(lower(v::text), lower(%s)) > 0"
                ).format(sql.Identifier(schema, view)),
                (needle,),
            ).fetchone()
            if row and row[0]:
                hits.append(f"{schema}.{view}")
    return hits


def _keyed_by_email(events: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """The events with one routed, won lead keyed upstream by its email address."""
    won = next(e["subject"] for e in events if e["type"] == "deal.won")
    email = next(
        e["data"]["email"] for e in events if e["type"] == "lead.captured" and e["subject"] == won
    )
    return won, email, [{**e, "subject": email} if e["subject"] == won else e for e in events]


def test_an_email_keyed_lead_leaves_its_address_nowhere_after_forget(
    runtime: Runtime, leadengine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADENGINE_LOG_LEVEL", "DEBUG")
    _, email, events = _keyed_by_email(generate(40, seed=11))
    other = next(e["subject"] for e in events if e["subject"] != email)
    escaped = json.dumps(  # rejected (no channel), under someone else's subject, \u0040-escaped
        {**events[0], "id": "bad-1", "subject": other, "type": "touch.page_viewed",
         "data": {"note": f"forwarded by {email.upper()}"}}
    ).replace("@", "\\u0040")  # fmt: skip
    assert email not in escaped
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + escaped + "\n")
    assert leadengine("ingest", str(path))[0] == 1  # done, one line rejected (kept)
    assert runtime.deadletters.count() == 1
    agg = runtime.app.lead_id(email)
    assert agg != legacy_lead_id(email)  # not uuid5: the id is not a hash anyone can redo
    assert _lead_state(runtime, email)["lead_key"] == email  # shown until forgotten
    assert runtime.app.lead_events(email)[0].key == email
    before = _history(leadengine, email)

    code, out = leadengine("forget", email, "--reason", "ticket 7", "--by", "dpo")
    forget_logs = leadengine.stderr[-1]
    assert code == 0 and "lead forgotten" in forget_logs
    shown = f"erased-{agg.hex[:12]}"
    assert email.lower() not in (out + forget_logs).lower() and shown in out + forget_logs
    assert runtime.deadletters.count() == 0  # the escaped address went too

    assert _search(runtime, [email.encode()]) == []  # every table: events, read model, keys
    assert _search_views(runtime, email) == []
    assert _lead_state(runtime, email)["lead_key"] == shown
    with runtime.db.connect() as conn:
        for table in ("lead_scores", "lead_stage_history", "lead_milestones", "lead_routing",
                      "lead_touchpoints"):  # fmt: skip
            keys = conn.execute(
                sql.SQL("SELECT DISTINCT lead_key FROM {} WHERE lead_id = %s").format(
                    sql.Identifier(runtime.db.schema, table)
                ),
                (agg,),
            ).fetchall()
            assert keys == [(shown,)], table
    fresh = LeadEngine(
        rules=runtime.rules, env=runtime.db.eventsourcing_env(), master_key=runtime.app.master_key
    )
    try:  # the whole log, decoded with every key there is: the address is in no event
        decoded = [
            repr(vars(fresh.mapper.to_domain_event(n)))
            for n in fresh.recorder.select_notifications(start=1, limit=100_000)
        ]
        assert len(decoded) > len(events) and not any(email in d for d in decoded)
        assert fresh.get_lead(email).key == shown  # events upstream still sends find it
    finally:
        fresh.close()
    _not_found_by_key(leadengine, email)
    code, out = leadengine("lead", "export", shown)  # the pseudonym finds it, as the id does
    assert code == 0 and email not in out and json.loads(out)["lead"] == shown
    after = _history(leadengine, str(agg))
    assert {v: after[v] for v in before} == before
    code, out = leadengine("lead", "history", shown, "--wide")
    assert code == 0 and email not in out and f"key={shown}" in out
    assert f"{agg} (forgotten: its key is erased)" in out
    for command in (("lead", "show", str(agg)), ("report", "sla"), ("report", "kpis")):
        code, out = leadengine(*command, "--format", "json")
        assert code == 0 and email not in out, command


def test_projecting_after_forget_rewrites_rows_written_before(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    """The projector itself rewrites the rows (the forget command projects; here it has not):
    every table that carried the key gets the pseudonym at `Erased`, in the same batch."""
    _, email, events = _keyed_by_email(generate(12, seed=11))
    runtime.app.ingest([validate_event(e) for e in events])
    runtime.projector.run()
    runtime.app.forget(email, reason="ticket 8", by="dpo", at=person_time(events[-1]))
    assert _search(runtime, [email.encode()]) != []  # the read model still shows it ...
    runtime.projector.run()
    assert _search(runtime, [email.encode()]) == []  # ... until the projector sees Erased
    assert _search_views(runtime, email) == []
    shown = f"erased-{runtime.app.lead_id(email).hex[:12]}"
    for name in ("leads", "history"):  # a rebuild (in worker processes too) shows the same
        rebuild(runtime.app, runtime.db, name, batch_size=50, workers=2)
    assert _search(runtime, [email.encode()]) == []
    assert _lead_state(runtime, email)["lead_key"] == shown


def test_a_schema_made_by_the_previous_version_keeps_working_after_migrate(
    runtime: Runtime, leadengine: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    events = sorted(generate(40, seed=7), key=lambda e: e["time"])
    half = len(events) // 2
    keys = {e["subject"] for e in events if e["type"] == "lead.captured"}
    with monkeypatch.context() as old:  # the previous version: uuid5 ids, keys in clear
        old.setattr(runtime.app, "lead_id", LeadIds(b"", UUID5))
        old.setattr(Lead.Started, "SEALED_FIELDS", ())
        by_id = {str(legacy_lead_id(k)): k for k in keys}
        assign = RoutingQueue.assign

        def assign_by_key(self: RoutingQueue, *, lead_key: str, **kw: Any) -> None:
            assign(self, lead_key=by_id.get(lead_key, lead_key), **kw)

        old.setattr(RoutingQueue, "assign", assign_by_key)
        runtime.app.ingest([validate_event(e) for e in events[:half]])
        runtime.projector.run()
    runtime.app.close()
    table = sql.Identifier(runtime.db.schema, "schema_migrations")
    with runtime.db.connect() as conn:  # ... whose migrations ended before 7
        conn.execute(sql.SQL("DELETE FROM {} WHERE version >= 7").format(table))
        conn.execute(
            sql.SQL("DROP TABLE {}").format(sql.Identifier(runtime.db.schema, SCHEME_TABLE))
        )
    with (
        pytest.raises(LeadEngineError, match=r"db migrate.*7 lead ids"),
        open_runtime(settings, rules=runtime.rules, database=runtime.db),
    ):
        pass
    code, out = leadengine("db", "migrate")
    assert code == 0 and "7 lead ids" in out, out
    assert leadengine("db", "migrate")[1].count("7 lead ids") == 0  # idempotent

    path = tmp_path / "more.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events[half:]))
    assert leadengine("ingest", str(path))[0] == 0
    with open_runtime(settings, rules=runtime.rules, database=runtime.db) as rt:
        assert rt.app.lead_id.scheme == UUID5
        per_lead = {k: len({e["id"] for e in events if e["subject"] == k}) for k in keys}
        for key in keys:  # one stream per lead: the new events joined the old ones
            lead = rt.app.get_lead(key)
            assert lead.id == legacy_lead_id(key) and len(lead.seen) == per_lead[key]
        queue_ids = {e.originator_id for e in _queue_events(rt)}
        released_by_key = [e for e in _queue_events(rt) if type(e).__name__ == "Released"
                           and e.lead_key in keys]  # fmt: skip
        assert released_by_key  # assigned by the old version, released by this one
        for queue_id in queue_ids:  # every lead still counted in a load is still open
            for ref in rt.app.repository.get(queue_id).open:
                key = by_id.get(ref, ref)
                assert rt.app.get_lead(key).routing_open, ref
        rt.app.clear_cache()

    key = next(e["subject"] for e in events[:half] if e["type"] == "lead.captured")
    code, out = leadengine("forget", key, "--reason", "ticket 9", "--format", "json")
    assert code == 0 and json.loads(out)["key"] == f"erased-{legacy_lead_id(key).hex[:12]}"
    shown = json.loads(out)["key"]
    assert key not in "".join(leadengine.stderr[-1:])
    assert leadengine("project")[0] == 0
    read_model = [h for h in _search(runtime, [key.encode()]) if h.startswith("lead_")]
    assert read_model == []  # only the events recorded before the upgrade still hold it
    assert _search_views(runtime, key) == []
    _not_found_by_key(leadengine, key)
    lead_id = str(legacy_lead_id(key))
    for command in (
        ("lead", "export", lead_id),
        ("lead", "history", lead_id, "--format", "json"),
        ("lead", "show", lead_id, "--format", "json"),
    ):
        code, out = leadengine(*command)
        assert code == 0 and key not in out and shown in out, command
    code, out = leadengine("verify", "--format", "json")
    assert code == 0 and json.loads(out)["ok"]


def _queue_events(rt: Runtime) -> list[Any]:
    topics = [get_topic(RoutingQueue.Assigned), get_topic(RoutingQueue.Released)]
    return [
        rt.app.mapper.to_domain_event(n)
        for n in rt.app.recorder.select_notifications(start=1, limit=100_000, topics=topics)
    ]


def test_an_upstream_key_shaped_like_a_pseudonym_or_lead_id_does_not_hide_a_forgotten_lead(
    runtime: Runtime, leadengine: Any
) -> None:
    """A hostile trial: after `forget`, upstream keys equal to the forgotten lead's pseudonym
    and to another forgotten lead's id were accepted (any string is a key), and then `lead show`
    by that pseudonym or id showed the impostor. The id or pseudonym names the lead it is first;
    the impostors are shown by their own lead ids."""
    keys = ["heidi@example.com", "ivan@example.com"]
    runtime.app.ingest(
        [validate_event(raw("lead.captured", k, {"email": k})) for k in keys]
    )  # fmt: skip
    ids = [runtime.app.lead_id(k) for k in keys]
    for k in keys:
        assert leadengine("forget", k, "--reason", "ticket 16")[0] == 0
    shown = f"erased-{ids[0].hex[:12]}"
    impostors = [shown, str(ids[1])]
    mallory = {"email": "mallory@example.com"}
    runtime.app.ingest([validate_event(raw("lead.captured", k, mallory)) for k in impostors])
    for name, forgotten in ((shown, ids[0]), (str(ids[1]), ids[1])):
        code, out = leadengine("lead", "show", name, "--format", "json")
        assert code == 0, leadengine.stderr
        doc = json.loads(out)
        assert doc["id"] == str(forgotten) and "mallory" not in out
    for k in impostors:  # each impostor is still found, by its own lead id
        own = runtime.app.lead_id(k)
        code, out = leadengine("lead", "show", str(own), "--format", "json")
        assert code == 0 and json.loads(out)["id"] == str(own)


def test_a_forgotten_lead_is_found_by_its_pseudonym_unless_two_share_it(
    runtime: Runtime, leadengine: Any
) -> None:
    """The pseudonym reports show finds the lead (as its lead id does); one that two forgotten
    leads share (12 hex digits alike) is refused naming both ids, never a guess between them."""
    key = "grace@example.com"
    runtime.app.ingest([validate_event(raw("lead.captured", key, {"email": key}))])
    lead_id = runtime.app.lead_id(key)
    assert leadengine("forget", key, "--reason", "ticket 15")[0] == 0
    shown = f"erased-{lead_id.hex[:12]}"
    code, out = leadengine("lead", "show", shown, "--format", "json")
    assert code == 0 and json.loads(out)["id"] == str(lead_id) and key not in out
    code, out = leadengine("lead", "show", shown.upper(), "--format", "json")  # as an id is
    assert code == 0 and json.loads(out)["id"] == str(lead_id) and key not in out
    twin = uuid.UUID(lead_id.hex[:12] + "f" * 20)  # a tombstone with the same first digits
    with runtime.db.connect() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (lead_id, wrapped, shredded_at) VALUES (%s, NULL, now())")
            .format(sql.Identifier(runtime.db.schema, KEYS_TABLE)),
            (twin,),
        )  # fmt: skip
    code, _ = leadengine("lead", "show", shown)
    refused = leadengine.stderr[-1]
    assert code == 2 and f"{shown} is the pseudonym of 2 forgotten leads" in refused
    assert str(lead_id) in refused and str(twin) in refused
    code, _ = leadengine("lead", "show", "erased-000000000000")
    assert code == 2 and "no lead with key, lead id or pseudonym" in leadengine.stderr[-1]
