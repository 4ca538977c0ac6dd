"""Every personal field of every event type is sealed at rest, and gone after `forget`.

The list of personal fields is read from the contract (`pii_fields`), so a personal field
added later is covered here without editing this test. Each field gets a unique marker; the
stored bytes of every table of the schema (events, chains, keys, read model, dead letters)
are scanned for it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from psycopg import sql

from engine.consumers.lines import ingest_lines
from engine.domain.contract import EVENT_TYPES, pii_fields, validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime
from tests.factory import line, raw

KEY = "sealed-lead-1"
#: the one event type every lead starts with goes first
FIRST = "lead.captured"


def _markers() -> dict[tuple[str, str], str]:
    """A unique marker per (event type, personal field); emails must look like one."""
    run = uuid.uuid4().hex[:8]
    out = {}
    for event_type in sorted(EVENT_TYPES):
        for name in sorted(pii_fields(event_type)):
            marker = f"mk{run}{event_type.replace('.', '')}{name}"
            out[event_type, name] = f"{marker}@sealed.example" if name == "email" else marker
    return out


def _templates() -> dict[str, dict[str, Any]]:
    """A valid generated payload of each event type with personal fields."""
    wanted = {t for t in EVENT_TYPES if pii_fields(t)}
    found: dict[str, dict[str, Any]] = {}
    for e in generate(40, seed=3, identity=1.0):  # identity events: their keys are personal
        if e["type"] in wanted and e["type"] not in found:
            found[e["type"]] = e["data"]
    assert set(found) == wanted, wanted - set(found)
    return found


def _events(markers: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    templates = _templates()
    order = sorted(templates, key=lambda t: (t != FIRST, t))
    events = []
    for day, event_type in enumerate(order):
        data = dict(templates[event_type])
        data.update({name: m for (t, name), m in markers.items() if t == event_type})
        events.append(raw(event_type, KEY, data, days=day))
    return events


def _scan(runtime: Runtime, needles: list[str]) -> dict[str, set[str]]:
    """Where each needle occurs in the stored values, case-insensitively: {table.column}."""
    found: dict[str, set[str]] = {n: set() for n in needles}
    lowered = [(n, n.lower().encode()) for n in needles]
    with runtime.db.connect() as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE'",
                (runtime.db.schema,),
            ).fetchall()
        ]
        assert {"leadengine_events", "lead_state", "dead_letters", "lead_keys"} <= set(tables)
        for table in tables:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(runtime.db.schema, table)))  # fmt: skip
            columns = [d.name for d in cur.description or ()]
            for row in cur.fetchall():
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes | memoryview):
                        stored = bytes(value).lower()
                    else:
                        stored = json.dumps(value, default=str).lower().encode()
                    for needle, low in lowered:
                        if low in stored:
                            found[needle].add(f"{table}.{column}")
    return found


def test_every_personal_field_is_sealed_at_rest_and_gone_after_forget(
    runtime: Runtime, leadengine: Any
) -> None:
    markers = _markers()
    assert {name for _, name in markers} >= {"email", "name", "phone", "notes"}
    events = _events(markers)
    result = runtime.app.ingest([validate_event(e) for e in events])
    assert result.accepted == len(events)
    # dead letters: one under another subject carrying every value of the person, one about
    # that other subject only (kept), one about the lead itself (no personal value)
    every = " ".join(markers.values())
    dead = [
        line(raw("touch.page_viewed", "someone-else", {"channel": None, "note": every})),
        line(raw("touch.page_viewed", "someone-else", {"channel": None})),
        line(raw("touch.page_viewed", KEY, {"channel": None})),
    ]
    report = ingest_lines(dead, origin="file:dead.jsonl", app=runtime.app,
                          deadletters=runtime.deadletters, batch_size=10)  # fmt: skip
    assert report.rejected == 3 and runtime.deadletters.count() == 3
    runtime.projector.run()

    # stored, readable through the engine ...
    lead = runtime.app.get_lead(KEY)
    readable = {(f.type, n): f.data[n] for f in lead.facts for n in pii_fields(f.type)}
    assert readable == markers
    # ... and in clear nowhere but in the dead letter that carries them
    needles = list(markers.values())
    assert _scan(runtime, needles) == {n: {"dead_letters.raw"} for n in needles}

    code, out = leadengine("forget", KEY, "--reason", "ticket 17", "--by", "dpo",
                           "--format", "json")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["dead_letters_purged"] == 2  # the lead's own and the carrier
    assert _scan(runtime, needles) == {n: set() for n in needles}
    kept = runtime.deadletters.latest(10)
    assert [json.loads(d["raw"])["subject"] for d in kept] == ["someone-else"]
    assert "note" not in json.loads(kept[0]["raw"])["data"]
