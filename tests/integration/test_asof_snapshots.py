"""As-of reads from snapshots (engine/postgres/snapshots.py) read every lead exactly as the full
lean fold does, whatever the history, the block size, the order moments are asked in (which
decides where snapshots get written), late facts and forget; a snapshot holds no personal data
in clear, and after `forget` none at all; a damaged snapshot is not believed. Real PostgreSQL."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from structlog.testing import capture_logs

from engine.domain.contract import validate_event
from engine.domain.errors import LeadEngineError
from engine.domain.generator import generate
from engine.domain.shown import Shown
from engine.postgres.snapshots import _READ, TABLE, fingerprint
from engine.runtime import Runtime
from engine.services.asof_lazy import PackedFacts
from engine.services.asof_read import _events_table, _store, lead_as_of
from tests.integration.test_asof_lean import SAME, _links


def _history(seed: int, stride: int) -> list[Any]:
    """Generated journeys under keys of their own (every example starts afresh), every
    `stride`-th fact arriving last (late facts walked in event time)."""
    run = uuid.uuid4().hex[:8]
    raws = generate(4, seed=seed, accounts=False)
    for e in raws:
        e["subject"] = f"{e['subject']}-{run}"
        e["id"] = f"{e['id']}-{run}"
    events = sorted((validate_event(e) for e in raws), key=lambda e: e.occurred_at)
    late = events[::stride]
    return [e for e in events if e not in late] + late


def _ingest(rt: Runtime, events: list[Any], batch: int) -> list[datetime]:
    moments = []
    for start in range(0, len(events), batch):
        rt.app.ingest(events[start : start + batch])
        moments.append(datetime.now(UTC))
    return moments


def _same(rt: Runtime, key: str, moment: datetime, block: int) -> bool:
    """Whether the read from snapshots equals the full fold (True), or both say the lead was
    not known then (False)."""
    try:
        want = lead_as_of(rt.app, key, moment, snapshots=False)
    except LeadEngineError as full:
        with pytest.raises(LeadEngineError) as got:
            lead_as_of(rt.app, key, moment, block=block)
        assert str(got.value) == str(full)
        return False
    got_ = lead_as_of(rt.app, key, moment, block=block)
    for name in SAME:
        assert getattr(got_, name) == getattr(want, name), (key, moment, name)
    assert (got_.version, _links(got_)) == (want.version, _links(want))
    assert got_.shown == want.shown == Shown.of(want.facts)  # what `lead show` prints
    assert got_.current_score(rt.rules) == want.current_score(rt.rules)
    when = want.clock or want.created_on
    later = when + timedelta(days=9.5)  # `lead show --as-of T` scores at T, decayed to then
    for model in rt.rules.all_models():  # the running totals are the full recomputation's
        assert got_.current_score(model, explain=False) == want.score_at(model, when, explain=False)
        assert got_.current_score(model, later, explain=False) == want.score_at(
            model, later, explain=False
        )
    return True


def _states(rt: Runtime, block: int) -> int:
    with rt.db.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(state) FROM {} WHERE fingerprint = %s").format(
                sql.Identifier(rt.db.schema, TABLE)
            ),
            (fingerprint(block),),
        ).fetchone()
    return int(row[0]) if row else 0


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    stride=st.integers(2, 9),
    batch=st.integers(4, 30),
    block=st.integers(2, 5),
    order=st.randoms(use_true_random=False),
    forget=st.booleans(),
)
def test_snapshots_read_as_the_full_fold(
    runtime: Runtime,
    seed: int,
    stride: int,
    batch: int,
    block: int,
    order: random.Random,
    forget: bool,
) -> None:
    events = _history(seed, stride)
    moments = _ingest(runtime, events, batch)
    keys = sorted({e.subject for e in events if e.is_lead_event})
    if forget:
        runtime.app.forget(
            keys[0], reason="ticket 1", by="dpo", at=datetime(2026, 6, 1, tzinfo=UTC)
        )
        moments.append(datetime.now(UTC))
    first = min(e.timestamp for e in runtime.app.lead_events(keys[0]))
    picked = order.sample(moments[:-1], min(4, len(moments) - 1)) + moments[-1:]
    asks = [(k, m) for k in keys for m in [first - timedelta(seconds=1), *picked]]
    order.shuffle(asks)  # the order of reads decides where snapshots are written
    known = sum(_same(runtime, key, moment, block) for key, moment in asks)
    known += sum(_same(runtime, key, moment, block) for key, moment in asks)  # from snapshots
    assert known > len(keys)


def test_snapshots_are_written_used_and_not_believed_when_damaged(runtime: Runtime) -> None:
    events = _history(5, 3)
    moments = _ingest(runtime, events, 10)
    key = max({e.subject for e in events if e.is_lead_event}, key=lambda k: sum(
        e.subject == k for e in events))  # fmt: skip
    assert _same(runtime, key, moments[-1], 2)
    assert _states(runtime, 2) == 1  # the read wrote one state, at its last whole block
    assert _same(runtime, key, moments[-1], 2)  # and the next read starts from it
    with runtime.db.connect() as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET state = %s WHERE state IS NOT NULL").format(
                sql.Identifier(runtime.db.schema, TABLE)
            ),
            (b"\x00" * 64,),
        )
    assert _same(runtime, key, moments[-1], 2)  # a forged state fails its tag: full fold


def test_a_read_from_a_snapshot_builds_no_fact_to_show_the_totals(runtime: Runtime) -> None:
    events = _history(5, 3)
    moments = _ingest(runtime, events, 10)
    key = max({e.subject for e in events if e.is_lead_event}, key=lambda k: sum(
        e.subject == k for e in events))  # fmt: skip
    assert _same(runtime, key, moments[-2], 4)  # writes states
    lead = lead_as_of(runtime.app, key, moments[-1], block=4)  # from one, with a tail after it
    later = moments[-1] + timedelta(days=3)  # show scores at T, after the lead's latest fact
    models = runtime.rules.all_models()
    totals = [lead.current_score(model, later, explain=False) for model in models]
    assert isinstance(lead.facts, PackedFacts) and len(lead.facts) > 4
    assert not (lead.facts.opened or lead.seen.opened or lead.walked.firsts.opened)
    full = lead_as_of(runtime.app, key, moments[-1], snapshots=False)
    assert totals == [full.score_at(m, later, explain=False) for m in models]
    assert _same(runtime, key, moments[-1], 4)


def test_a_read_scans_only_the_event_rows_it_returns(runtime: Runtime) -> None:
    """The rows after the state are read as index ranges: an early moment's read of a lead
    with many blocks does not pull every later row out of the table to drop it above."""
    events = _history(5, 3)
    moments = _ingest(runtime, events, 10)
    key = max({e.subject for e in events if e.is_lead_event}, key=lambda k: sum(
        e.subject == k for e in events))  # fmt: skip
    assert _same(runtime, key, moments[-1], 2)  # the blocks (and a state) are written
    store = _store(runtime.app, 2)
    assert store is not None
    lead_id = runtime.app.lead_id(key)
    statement = _READ.format(snapshots=store.table, events=_events_table(runtime.app))
    explain = sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement
    read = 0
    for moment in moments:
        params = {"lead": lead_id, "fp": store.fingerprint, "block": 2, "at": moment}
        with runtime.db.connect() as conn:
            returned = sum(r[0] == 2 for r in conn.execute(statement, params).fetchall())
            plan = conn.execute(explain, params).fetchone()[0][0]["Plan"]
        scanned = sum(
            n["Actual Rows"] * n["Actual Loops"]
            for n in _nodes(plan)
            if n.get("Relation Name") == runtime.app.recorder.events_table_name
        )
        assert scanned == returned, (moment, scanned, returned)
        read += returned
    assert read > 0


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


def test_snapshots_hold_no_personal_data_in_clear_and_none_after_forget(runtime: Runtime) -> None:
    marker = f"snapmark{uuid.uuid4().hex[:10]}"
    events = _history(9, 4)
    for e in events:
        if e.type == "lead.captured":
            e.data["email"] = f"{marker}@sealed.example"
            e.data["name"] = f"{marker} Name"
    _ingest(runtime, events, 8)
    keys = sorted({e.subject for e in events if e.is_lead_event})
    now = datetime.now(UTC)
    shown = {k: lead_as_of(runtime.app, k, now, block=2) for k in keys}
    assert any(marker in str(f.data) for lead in shown.values() for f in lead.facts)
    assert _states(runtime, 2) >= 1
    assert marker.encode() not in _table_bytes(runtime)  # sealed, as the events are
    for key in keys:
        forgotten = runtime.app.forget(key, reason="ticket 2", by="dpo", at=now)
        for value in forgotten.personal_values:
            assert value.encode() not in _table_bytes(runtime)
    again = datetime.now(UTC)
    for key in keys:
        assert _same(runtime, key, again, 2)
        with capture_logs() as logs:  # no snapshot for a forgotten lead, and no warning either
            lead = lead_as_of(runtime.app, key, again, block=2)
        assert [e for e in logs if e["event"] == "snapshot_not_saved"] == []
        assert not any(marker in str(f.data) for f in lead.facts)
    assert _states(runtime, 2) == 0  # a forgotten lead has no key to seal a snapshot with


def _table_bytes(rt: Runtime) -> bytes:
    with rt.db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT lead_id::text, version, state FROM {}").format(
                sql.Identifier(rt.db.schema, TABLE)
            )
        ).fetchall()
    return b"".join(f"{a}{b}".encode() + bytes(c or b"") for a, b, c in rows)
