"""Auditors' tools on a real PostgreSQL: as-of replay equal to what was shown then, hash chains
that catch edits, deletions, reorderings and insertions, anchors that catch rewrites, export."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.chain import digest, link
from engine.contract import validate_event
from engine.generator import generate
from engine.runtime import Runtime
from engine.verify import anchor, verify


def _events(leads: int, seed: int) -> list[Any]:
    return [validate_event(e) for e in generate(leads, seed=seed)]


def test_show_as_of_equals_what_show_printed_then(runtime: Runtime, leadengine: Any) -> None:
    events = _events(30, seed=3)
    keys = sorted({e.subject for e in events if e.type == "lead.captured"})[:4]
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
        assert code == 0 and replayed == out, (key, moment)
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
        cur = conn.execute(query, params)  # type: ignore[call-overload]
        return cur.fetchall() if cur.description else []  # type: ignore[no-any-return]


@pytest.fixture
def chained(runtime: Runtime) -> tuple[Runtime, Any]:
    events = _events(25, seed=5)
    runtime.app.ingest(events)
    counts: dict[str, int] = {}
    for e in events:
        counts[e.subject] = counts.get(e.subject, 0) + 1
    key = max(counts, key=lambda k: counts[k])
    return runtime, runtime.app.lead_id(key)


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
    report = verify(runtime.db, anchors_file=anchors)
    assert not report.ok and "anchor" in report.breaks[0].problem
    assert report.anchors_checked >= 1


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
    assert any("rules_version" in d for d in doc["decisions"]) or doc["decisions"]
    assert len(doc["history"]) == len(doc["events"])
