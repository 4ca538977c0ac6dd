"""Auditors' tools on a real PostgreSQL: as-of replay equal to what was shown then, hash chains
that catch edits, deletions, reorderings and insertions, anchors that catch rewrites, export."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.postgres.chain import digest, link
from engine.postgres.verify import anchor, lead_names, verify
from engine.runtime import Runtime


def _events(leads: int, seed: int) -> list[Any]:
    return [validate_event(e) for e in generate(leads, seed=seed)]


def test_show_as_of_equals_what_show_printed_then(runtime: Runtime, leadengine: Any) -> None:
    events = _events(30, seed=3)
    captured = {e.subject for e in events if e.type == "lead.captured"}
    span = {k: [e.occurred_at for e in events if e.subject == k] for k in captured}
    # the four leads whose journeys last longest: they change between batches
    keys = sorted(captured, key=lambda k: (min(span[k]) - max(span[k]), k))[:4]
    printed: list[tuple[datetime, str, str]] = []
    step = len(events) // 5 + 1
    for start in range(0, len(events), step):
        runtime.app.ingest(events[start : start + step])
        time.sleep(0.005)
        moment = datetime.now(UTC)
        for key in keys:
            code, out = leadengine("lead", "show", key, "--format", "json")
            if code == 0:
                printed.append((moment, key, out))
        time.sleep(0.005)
    assert len({out for _, _, out in printed}) > len(keys)  # the leads changed between batches
    for moment, key, out in printed:
        code, replayed = leadengine(
            "lead", "show", key, "--as-of", moment.isoformat(), "--format", "json"
        )
        assert code == 0
        then, again = json.loads(out), json.loads(replayed)
        # all of it, but the score: taken at T, decayed to then, as `lead explain --as-of T`
        assert {**again, "score": None} == {**then, "score": None}, (key, moment)
        assert (again["score"]["as_of"], again["score"]["fit"]) == (
            moment.isoformat(),
            then["score"]["fit"],
        )
        code, explained = leadengine(
            "lead", "explain", key, "--as-of", moment.isoformat(), "--format", "json"
        )
        assert code == 0 and json.loads(explained)["total"] == again["score"]["total"]
    code, _ = leadengine("lead", "show", keys[0], "--as-of", "2000-01-01T00:00:00Z")
    assert code == 2


def test_history_on_two_clocks(runtime: Runtime, leadengine: Any) -> None:
    events = _events(10, seed=8)
    runtime.app.ingest(events)
    key = (
        next(e.subject for e in events if e.type == "deal.won")
        if any(e.type == "deal.won" for e in events)
        else next(e.subject for e in events if e.type == "lead.captured")
    )
    facts = sorted(e.occurred_at for e in events if e.subject == key)
    middle = facts[len(facts) // 2]
    code, out = leadengine(
        "lead", "history", key, "--occurred-by", middle.isoformat(), "--format", "json"
    )
    rows = json.loads(out)
    occurred = [r["occurred_at"] for r in rows if r["occurred_at"]]
    assert code == 0 and occurred and max(occurred) <= middle.isoformat()
    code, full = leadengine("lead", "history", key, "--format", "json")
    assert len(json.loads(full)) > len(rows)
    code, csv = leadengine(
        "lead", "history", key, "--as-of", datetime.now(UTC).isoformat(), "--format", "csv"
    )
    assert code == 0 and csv.startswith("version,recorded_at,occurred_at,event")
    assert len(csv.strip().splitlines()) == len(json.loads(full)) + 1


def _sql(runtime: Runtime, query: str, *params: Any) -> list[Any]:
    with runtime.db.connect() as conn:
        conn.execute(f'SET search_path TO "{runtime.db.schema}"')
        _as_a_forger(conn)
        cur = conn.execute(query, params)  # type: ignore[call-overload]
        return cur.fetchall() if cur.description else []  # type: ignore[no-any-return]


def _as_a_forger(conn: Any) -> None:
    """Writes as someone with table access, past the store's triggers (the outbox check): what
    verify must catch is the forged event, however it got in."""
    conn.execute("SET session_replication_role = replica")


def _busiest_key() -> str:
    """The lead with the most events in the `chained` fixture's data."""
    counts: dict[str, int] = {}
    for e in _events(25, seed=5):
        if e.is_lead_event:
            counts[e.subject] = counts.get(e.subject, 0) + 1
    return max(counts, key=lambda k: counts[k])


@pytest.fixture
def chained(runtime: Runtime) -> tuple[Runtime, Any]:
    runtime.app.ingest(_events(25, seed=5))
    return runtime, runtime.app.lead_id(_busiest_key())


def test_untouched_chains_verify(chained: tuple[Runtime, Any], leadengine: Any) -> None:
    runtime, _ = chained
    report = verify(runtime.db)
    assert report.ok and report.events > 300 and report.unchained_aggregates == 0
    code, out = leadengine("verify")
    assert code == 0 and "OK: every chain verifies" in out


TAMPER = {
    "edit": (
        "UPDATE leadengine_events SET state = overlay(state placing 'X'::bytea from 12 for 1) "
        "WHERE originator_id = %s AND originator_version = 3",
        "stored bytes changed",
    ),
    "delete": (
        "DELETE FROM leadengine_events WHERE originator_id = %s AND originator_version = 3",
        "event missing",
    ),
    "delete_with_link": (
        "WITH d AS (DELETE FROM leadengine_events WHERE originator_id = %s "
        "AND originator_version = 3 RETURNING originator_id) "
        "DELETE FROM event_chain WHERE originator_id IN (SELECT originator_id FROM d) "
        "AND originator_version = 3",
        "versions 3..3 missing",
    ),
    "reorder": (
        # swap versions 2 and 3 (through -2: the primary key is checked row by row)
        "UPDATE leadengine_events SET originator_version = -2 "
        "WHERE originator_id = %(a)s AND originator_version = 2; "
        "UPDATE leadengine_events SET originator_version = 2 "
        "WHERE originator_id = %(a)s AND originator_version = 3; "
        "UPDATE leadengine_events SET originator_version = 3 "
        "WHERE originator_id = %(a)s AND originator_version = -2",
        "stored bytes changed",
    ),
    "insert": (
        "INSERT INTO leadengine_events (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version + 1, topic, state FROM leadengine_events "
        "WHERE originator_id = %s ORDER BY originator_version DESC LIMIT 1",
        "no chain link",
    ),
}


@pytest.mark.parametrize("kind", list(TAMPER))
def test_verify_catches_tampering(chained: tuple[Runtime, Any], leadengine: Any, kind: str) -> None:
    runtime, agg = chained
    statements, problem = TAMPER[kind]
    for statement in statements.split("; "):
        with runtime.db.connect() as conn:
            conn.execute(f'SET search_path TO "{runtime.db.schema}"')
            _as_a_forger(conn)
            conn.execute(statement.replace("%(a)s", "%s"), (agg,))
    report = verify(runtime.db)
    assert not report.ok
    first = report.breaks[0]
    assert first.aggregate == agg and problem in first.problem
    assert first.version in (2, 3) or kind == "insert"
    code, out = leadengine("verify")
    assert code == 1 and "BROKEN" in out and str(agg) in out


def test_anchor_catches_a_consistent_rewrite(
    chained: tuple[Runtime, Any], tmp_path: Path, leadengine: Any
) -> None:
    runtime, agg = chained
    anchors = tmp_path / "anchors.jsonl"
    code, out = leadengine("anchor", "--file", str(anchors))
    assert code == 0 and "anchored" in out and json.loads(anchors.read_text())["events"] > 300
    # rewrite version 3 and re-link everything after it: every chain check passes ...
    rows = _sql(
        runtime,
        "SELECT originator_version, topic, state FROM leadengine_events "
        "WHERE originator_id = %s ORDER BY originator_version",
        agg,
    )
    previous = b""
    for version, topic, state in rows:
        state = bytes(state)
        if version == 3:
            state = state.replace(b"touch", b"tooch", 1) if b"touch" in state else state + b" "
            _sql(runtime, "UPDATE leadengine_events SET state = %s WHERE originator_id = %s "
                 "AND originator_version = 3", state, agg)  # fmt: skip
        d = digest(agg, version, topic, state)
        previous = link(previous, d)
        _sql(runtime, "UPDATE event_chain SET digest = %s, entry = %s WHERE originator_id = %s "
             "AND originator_version = %s", d, previous, agg, version)  # fmt: skip
    assert verify(runtime.db, agg).ok  # the chain alone is fooled
    report = verify(runtime.db, anchors_file=anchors, names=lead_names(runtime.app))
    assert not report.ok and "anchor" in report.breaks[0].problem
    assert report.anchors_checked >= 1
    # the break names the rewritten lead, not aggregate 00000000-...
    assert [(b.aggregate, b.key) for b in report.breaks] == [(agg, _busiest_key())]
    assert "differs now" in report.breaks[0].problem
    code, out = leadengine("verify", "--anchors-file", str(anchors))
    assert code == 1 and f"(lead {_busiest_key()})" in out


def test_anchor_catches_a_deleted_tail(chained: tuple[Runtime, Any]) -> None:
    runtime, agg = chained
    anchor(runtime.db)
    for table in ("event_chain", "leadengine_events"):
        _sql(
            runtime,
            f"DELETE FROM {table} WHERE originator_id = %s AND originator_version = "
            f"(SELECT max(originator_version) FROM {table} WHERE originator_id = %s)",
            agg,
            agg,
        )
    report = verify(runtime.db)
    assert not report.ok and "anchor" in report.breaks[0].problem


def test_export_is_one_self_describing_document(
    chained: tuple[Runtime, Any], leadengine: Any, tmp_path: Path
) -> None:
    runtime, agg = chained
    key = next(iter(_sql(runtime, "SELECT lead_key FROM lead_state WHERE lead_id = %s", agg)), None)
    if key is None:
        runtime.projector.run()
        key = _sql(runtime, "SELECT lead_key FROM lead_state WHERE lead_id = %s", agg)[0]
    out = tmp_path / "export.json"
    code, _ = leadengine("lead", "export", key[0], "-o", str(out))
    doc = json.loads(out.read_text())
    assert code == 0 and doc["chain"]["verified"] is True
    assert [e["version"] for e in doc["events"]] == list(range(1, len(doc["events"]) + 1))
    assert doc["chain"]["head"] == doc["events"][-1]["chain"]["entry"]
    # the chain can be re-linked from the exported digests alone, without leadengine
    entry = b""
    for e in doc["events"]:
        entry = hashlib.sha256(entry + bytes.fromhex(e["chain"]["digest"])).digest()
        assert entry.hex() == e["chain"]["entry"]
    # the decisions are exactly the stored decision events, each as recorded (MQL with its rules)
    kinds = ("MarketingQualified", "StageChanged", "Routed", "RoutingFailed", "AnomalyFlagged")
    stored = _sql(runtime, "SELECT originator_version, topic FROM leadengine_events "
                  "WHERE originator_id = %s ORDER BY originator_version", agg)  # fmt: skip
    decided = [v for v, topic in stored if topic.rsplit(".", 1)[-1] in kinds]
    assert [d["version"] for d in doc["decisions"]] == decided and decided
    assert {d["kind"] for d in doc["decisions"]} <= {f"Lead.{k}" for k in kinds}
    assert all(d["rules_version"] == doc["current_rules"] for d in doc["decisions"]
               if d["kind"] == "Lead.MarketingQualified")  # fmt: skip
    assert len(doc["history"]) == len(doc["events"])


def test_deleted_links_and_an_edited_payload_fail_verify(
    chained: tuple[Runtime, Any], leadengine: Any
) -> None:
    """The schema is chained from its first event: a stream without links is not "recorded
    before hash chains", it is a break."""
    runtime, agg = chained
    _sql(runtime, "DELETE FROM event_chain WHERE originator_id = %s", agg)
    _sql(runtime, "UPDATE leadengine_events SET state = overlay(state placing 'X'::bytea from 12 "
         "for 1) WHERE originator_id = %s AND originator_version = 3", agg)  # fmt: skip
    report = verify(runtime.db, names=lead_names(runtime.app))
    assert report.unchained_aggregates == 0 and len(report.breaks) == 1
    first = report.breaks[0]
    assert (first.aggregate, first.version, first.key) == (agg, 1, _busiest_key())
    assert "has no chain link" in first.problem
    code, out = leadengine("verify")
    assert code == 1 and f"(lead {_busiest_key()})" in out and "OK:" not in out
    code, out = leadengine("verify", _busiest_key())
    assert code == 1 and "has no chain link" in out


def _forge(runtime: Runtime, agg: Any, **nid: Any) -> Any:
    """Copy every event of `agg` under a new originator id, without chain rows."""
    forged = uuid.uuid4()
    _sql(
        runtime,
        "INSERT INTO leadengine_events (originator_id, originator_version, topic, state"
        + (", notification_id" if nid else "")
        + ") SELECT %s, originator_version, topic, state"
        + (" , %s + originator_version" if nid else "")
        + " FROM leadengine_events WHERE originator_id = %s",
        *((forged, nid["base"], agg) if nid else (forged, agg)),
    )
    return forged


def test_a_forged_stream_fails_verify(
    chained: tuple[Runtime, Any], tmp_path: Path, leadengine: Any
) -> None:
    runtime, agg = chained
    anchors = tmp_path / "anchors.jsonl"
    assert leadengine("anchor", "--file", str(anchors))[0] == 0
    forged = _forge(runtime, agg)
    code, out = leadengine("verify", "--anchors-file", str(anchors))
    assert code == 1 and str(forged) in out and "has no chain link" in out


def test_anchors_count_every_event_of_the_log(
    runtime: Runtime, tmp_path: Path, leadengine: Any
) -> None:
    """In a log chained only from some point (made before hash chains), events below it may
    lack links; one forged into that range is caught by the anchor's count of the log."""
    events = _events(12, seed=4)
    runtime.app.ingest(events[: len(events) // 2])
    top = _sql(runtime, "SELECT max(notification_id) FROM leadengine_events")[0][0]
    _sql(runtime, "DELETE FROM event_chain")  # as if recorded before hash chains
    _sql(runtime, "SELECT setval(pg_get_serial_sequence('leadengine_events', 'notification_id'),"
         " %s)", top + 29)  # then ids of rolled-back inserts, then chains  # fmt: skip
    _sql(runtime, "UPDATE chain_start SET chained_from = %s", top + 30)
    runtime.app.ingest(events[len(events) // 2 :])
    anchors = tmp_path / "anchors.jsonl"
    assert leadengine("anchor", "--file", str(anchors))[0] == 0
    assert verify(runtime.db, anchors_file=anchors).ok
    agg = _sql(runtime, "SELECT originator_id FROM leadengine_events WHERE notification_id = 1")
    n = _sql(runtime, "SELECT count(*) FROM leadengine_events WHERE originator_id = %s", agg[0][0])
    assert n[0][0] < 29  # its copy fits in the unused ids
    _forge(runtime, agg[0][0], base=top)  # into the unused ids top+1.., below chained_from
    assert not verify(runtime.db).ok  # the table's anchor counts them ...
    _sql(runtime, "DELETE FROM chain_anchors")
    assert verify(runtime.db).ok  # ... the chains cannot tell: those ids predate them
    report = verify(runtime.db, anchors_file=anchors)
    assert not report.ok and "events in the log up to it then" in report.breaks[0].problem
    code, out = leadengine("verify", "--anchors-file", str(anchors))
    assert code == 1 and "BROKEN" in out


def test_anchors_catch_a_truncated_log(
    chained: tuple[Runtime, Any], tmp_path: Path, leadengine: Any
) -> None:
    runtime, _ = chained
    anchors = tmp_path / "anchors.jsonl"
    assert leadengine("anchor", "--file", str(anchors))[0] == 0
    newest = _sql(runtime, "SELECT originator_id, originator_version FROM leadengine_events "
                  "ORDER BY notification_id DESC LIMIT 5")  # fmt: skip
    for agg, version in newest:
        for table in ("event_chain", "leadengine_events"):
            _sql(runtime, f"DELETE FROM {table} WHERE originator_id = %s "
                 "AND originator_version >= %s", agg, version)  # fmt: skip
    report = verify(runtime.db, anchors_file=anchors, names=lead_names(runtime.app))
    assert not report.ok and all("truncated" in b.problem for b in report.breaks)
    assert all(b.problem.startswith("anchor (file)") for b in report.breaks)  # chains whole
    lead_of = runtime.app.lead_id
    keys = {lead_of(e.subject): e.subject for e in _events(25, seed=5) if e.is_lead_event}
    assert {b.aggregate for b in report.breaks} == {agg for agg, _ in newest}
    assert {b.key for b in report.breaks} == {keys.get(agg) for agg, _ in newest}
    code, out = leadengine("verify", "--anchors-file", str(anchors))
    assert code == 1 and "truncated" in out
    _sql(runtime, "DELETE FROM chain_anchors")  # the writer covers its tracks in the database:
    report = verify(runtime.db, anchors_file=anchors)  # still caught, but by whom is unknown
    assert [b.aggregate.int for b in report.breaks] == [0]
    assert "truncated" in report.breaks[0].problem


ANCHOR_FILES = {
    "missing": (None, "does not exist"),
    "empty": ("\n", "is empty"),
    "not JSON": ('{"upto_notification_id": 3,\n', "line 1: not JSON"),
    "not an anchor": ('{"upto_notification_id": 3, "events": "3", "anchor": "ab"}\n',
                      "line 1: events must be a whole number"),
    "bad digest": ('{"upto_notification_id": 3, "events": 3, "anchor": "xyz"}\n',
                   "line 1: anchor must be a sha256 in hex"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(ANCHOR_FILES))
def test_an_unusable_anchors_file_is_an_error(
    chained: tuple[Runtime, Any], tmp_path: Path, leadengine: Any, case: str
) -> None:
    text, expected = ANCHOR_FILES[case]
    anchors = tmp_path / "anchors.jsonl"
    if text is not None:
        anchors.write_text(text)
    code, out = leadengine("verify", "--anchors-file", str(anchors))
    err = [line for line in leadengine.stderr[-1].splitlines() if line.strip()]
    assert code == 2 and out == ""
    assert len(err) == 1 and f"anchors file {anchors}" in err[0] and expected in err[0], err


def test_a_schema_of_the_previous_version_verifies_after_migrate(
    chained: tuple[Runtime, Any], tmp_path: Path, leadengine: Any
) -> None:
    """Made by the previous version: no chain_start, anchors without the new columns, an
    anchors file of old lines. `db migrate` chains it from its first event."""
    runtime, agg = chained
    anchors = tmp_path / "anchors.jsonl"
    old = {k: v for k, v in anchor(runtime.db).items() if k in ("upto_notification_id",
           "events", "anchor")}  # fmt: skip
    anchors.write_text(json.dumps(old) + "\n")
    _sql(runtime, "DROP TABLE chain_start")
    _sql(runtime, "ALTER TABLE chain_anchors DROP COLUMN log_events, DROP COLUMN chained_from, "
         "DROP COLUMN heads")  # fmt: skip
    _sql(runtime, "DELETE FROM schema_migrations WHERE version = 6")
    code, _ = leadengine("verify")
    assert code == 2 and "db migrate" in leadengine.stderr[-1]
    code, out = leadengine("db", "migrate")
    assert code == 0 and "hash chains" in out
    first = _sql(runtime, "SELECT min(notification_id) FROM leadengine_events")[0][0]
    assert _sql(runtime, "SELECT chained_from FROM chain_start") == [(first,)]
    code, out = leadengine("verify", "--anchors-file", str(anchors), "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["anchors_checked"] == 2
    assert doc["unchained_aggregates"] == 0
    assert leadengine("anchor", "--file", str(anchors))[0] == 0  # new lines after old ones
    assert leadengine("verify", "--anchors-file", str(anchors))[0] == 0
    _sql(runtime, "DELETE FROM event_chain WHERE originator_id = %s", agg)
    code, out = leadengine("verify")
    assert code == 1 and "has no chain link" in out


def test_a_log_from_before_hash_chains_is_chained_from_migration_on(
    runtime: Runtime, leadengine: Any
) -> None:
    """Events recorded before hash chains stay unchained; every event after `db migrate`,
    new events of old leads included, is chained and verified."""
    events = _events(12, seed=6)
    half = len(events) // 2
    runtime.app.ingest(events[:half])
    _sql(runtime, "DELETE FROM event_chain")
    _sql(runtime, "DROP TABLE chain_start")
    _sql(runtime, "DELETE FROM schema_migrations WHERE version = 6")
    assert leadengine("db", "migrate")[0] == 0
    top = _sql(runtime, "SELECT max(notification_id) FROM leadengine_events")[0][0]
    assert _sql(runtime, "SELECT chained_from FROM chain_start") == [(top + 1,)]
    before = verify(runtime.db)
    assert before.ok and before.unchained_aggregates == before.aggregates > 0
    runtime.app.ingest(events[half:])
    after = verify(runtime.db)
    assert after.ok and 0 < after.unchained_aggregates < before.unchained_aggregates
    old = _sql(runtime, "SELECT c.originator_id FROM event_chain c JOIN leadengine_events e "
               "USING (originator_id, originator_version) WHERE c.originator_version > 1 AND "
               "NOT EXISTS (SELECT 1 FROM event_chain p WHERE p.originator_id = c.originator_id "
               "AND p.originator_version = 1) LIMIT 1")  # fmt: skip
    assert old  # an old lead whose chain starts at its first new event
    _sql(runtime, "UPDATE leadengine_events SET state = state || ' '::bytea WHERE "
         "originator_id = %s AND notification_id > %s", old[0][0], top)  # fmt: skip
    assert not verify(runtime.db).ok
