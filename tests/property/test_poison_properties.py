"""The rule of issue 13, over generated input, on a real PostgreSQL schema: every record either
is rejected with a specific reason and kept (dead_letters, byte for byte), or is stored AND
projected (all four projections reach the end of the log; its lead is in lead_state).

Each example writes its records as one JSON Lines file and ingests it the way `leadengine
ingest FILE` does (read_lines -> ingest_lines -> PostgreSQL), then projects."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from psycopg import sql

from engine.cli.inputs import read_lines
from engine.consumers.lines import ingest_lines
from engine.domain.contract import parse_event
from engine.domain.errors import InvalidEvent
from engine.projections.projector import PROJECTIONS
from engine.runtime import Runtime
from tests.property.strategies import encode, records

_files = itertools.count()


def _dead_letters(runtime: Runtime, origin: str) -> dict[int, tuple[bytes, str]]:
    """Line number -> (raw bytes, error) of the dead letters from one file."""
    query = sql.SQL("SELECT origin, raw, error FROM {} WHERE origin LIKE %s").format(
        sql.Identifier(runtime.db.schema, "dead_letters")
    )
    with runtime.db.connect() as conn:
        rows = conn.execute(query, (origin + ":%",)).fetchall()
    return {int(o.rsplit(":", 1)[1]): (bytes(raw), error) for o, raw, error in rows}


def _rows(runtime: Runtime, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        return list(conn.execute(query.format(s=runtime.db.schema), params).fetchall())


def _check_projected(runtime: Runtime) -> None:
    head = runtime.app.recorder.max_notification_id() or 0
    positions = runtime.projector.positions()
    assert set(positions) == set(PROJECTIONS)
    assert all(at == head for at in positions.values()), (positions, head)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one schema for the whole run, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=records(max_size=15))
def test_every_record_is_dead_lettered_with_a_reason_or_stored_and_projected(
    runtime: Runtime, tmp_path: Path, batch: list[dict[str, Any] | bytes]
) -> None:
    path = tmp_path / f"batch-{next(_files)}.jsonl"
    path.write_bytes(b"\n".join(encode(r) for r in batch) + b"\n")
    origin = f"file:{path}"
    report = ingest_lines(
        read_lines(str(path)),
        origin=origin,
        app=runtime.app,
        deadletters=runtime.deadletters,
        batch_size=runtime.settings.batch_size,
        max_bytes=runtime.settings.max_event_bytes,
    )
    runtime.projector.run(until_caught_up=True)

    kept = _dead_letters(runtime, origin)
    assert report.lines == len(batch)
    # dead letters: records that do not parse, and conflicts (a reused (source, id) with other
    # content: they parse, and are refused by the lead that holds the first one)
    assert report.rejected + report.conflicts == len(kept)
    outcomes = report.accepted + report.duplicates + report.ignored
    assert outcomes + report.rejected + report.conflicts == len(batch)
    _check_projected(runtime)
    for number, record in enumerate(batch, start=1):
        raw = encode(record).strip()
        if number in kept:
            stored_raw, error = kept[number]
            assert stored_raw == raw
            assert error
            try:
                parse_event(raw, max_bytes=runtime.settings.max_event_bytes)
            except InvalidEvent as exc:
                assert exc.describe() == error
            else:
                assert "same identity, different content" in error, (number, error)
            continue
        env = parse_event(raw, max_bytes=runtime.settings.max_event_bytes)
        if env.is_campaign_event:
            found = _rows(runtime, "SELECT 1 FROM {s}.campaign_costs WHERE event_id = %s", env.id)
            assert found, env.id
        elif env.is_lead_event:
            # stored on the lead that holds its (source, id): its subject's, or the lead that
            # recorded the same fact first under another key (a duplicate: docs/contract.md)
            pair = (env.source, env.id)
            holder = runtime.app.identities.owners([pair]).get(pair)
            if holder is not None and holder != runtime.app.lead_id(env.subject):
                other = runtime.app.repository.get(holder)  # counted a duplicate, stored there
                assert env.id in {f.event_id for f in other.facts} or other.erased_at is not None
                continue
            lead = runtime.app.get_lead(env.subject)
            assert env.id in {f.event_id for f in lead.facts} or lead.erased_at is not None
            row = _rows(
                runtime,
                "SELECT lead_key, version FROM {s}.lead_state WHERE lead_id = %s",
                runtime.app.lead_id(env.subject),
            )
            assert row == [(env.subject, lead.version)], env.subject
