"""`projections rebuild`: a new version beside the live tables, switched in one transaction,
equal to what incremental projection gives, under new rules when the rules changed; readers
never see a half-built table; a projector running meanwhile carries on."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.domain.rules import Rules
from engine.projections.projector import PROJECTIONS, PositionMoved, Projector
from engine.projections.rebuild import rebuild, staging_schema
from engine.readmodel import READER_ROLE, create_reader_role, grant, read_schema
from engine.runtime import Runtime, open_runtime
from tests.kafka_helpers import wait_for


def table_rows(runtime: Runtime, table: str) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(
                sql.Identifier(runtime.db.schema, table)
            )
        ).fetchall()


def ingest(runtime: Runtime, leads: int, seed: int) -> int:
    events = [validate_event(e) for e in generate(leads, seed=seed)]
    runtime.app.ingest(events)
    return len(events)


@pytest.fixture
def loaded(runtime: Runtime) -> Iterator[Runtime]:
    ingest(runtime, 80, seed=21)
    runtime.projector.run()
    yield runtime


def test_a_rebuild_under_the_same_rules_gives_the_same_rows(loaded: Runtime) -> None:
    """Deterministic: incremental projection (batches of 2,000, upserts) and the bulk rebuild
    (COPY, every lead written once; in one process or split by aggregate over two) produce
    identical tables, for every projection."""
    runs = [(name, 2) for name in PROJECTIONS] + [("leads", 1)]  # split over 2 processes, and not
    for name, workers in runs:
        tables = PROJECTIONS[name]
        before = {t: table_rows(loaded, t) for t in tables}
        report = rebuild(loaded.app, loaded.db, name, batch_size=500, workers=workers)
        assert report.events == loaded.projector.lag() + loaded.projector.position()
        assert report.rows == {t: len(before[t]) for t in tables}
        assert {t: table_rows(loaded, t) for t in tables} == before, (name, workers)
    with loaded.db.connect() as conn:  # the staging schema is gone
        gone = conn.execute(
            "SELECT to_regnamespace(%s)", (staging_schema(loaded.db.schema),)
        ).fetchone()
    assert gone == (None,)


def test_rebuild_under_new_rules_switches_atomically_while_readers_read(
    loaded: Runtime, rules: Rules
) -> None:
    read = read_schema(loaded.db.schema)
    leads = len(table_rows(loaded, "lead_state"))
    old_scores = {r[0]: r[7] for r in table_rows(loaded, "lead_state")}

    seen: list[tuple[int, Any]] = []
    reader_pids: list[int] = []
    blocked: list[int] = []
    funnel_reads: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:  # reads the contract view the whole time, as a reporting job would
        try:
            with loaded.db.connect() as conn:
                reader_pids.append(conn.info.backend_pid)
                while not stop.is_set():
                    row = conn.execute(
                        sql.SQL("SELECT count(*), sum(score) FROM {}.lead_current").format(
                            sql.Identifier(read)
                        )
                    ).fetchone()
                    assert row is not None
                    seen.append((int(row[0]), row[1]))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    def funnel_reader() -> None:  # a KPI view over the same table, through the contract
        try:
            with loaded.db.connect() as conn:
                while not stop.is_set():
                    rows = conn.execute(
                        sql.SQL("SELECT * FROM {}.kpi_funnel").format(sql.Identifier(read))
                    ).fetchall()
                    funnel_reads.append(len(rows))
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    newer = rules.model_copy(
        update={
            "version": "2027.1",
            "combine": rules.combine.model_copy(
                update={"fit_weight": 0.9, "engagement_weight": 0.1}
            ),
        }
    )
    live = loaded.projector
    stale = live.positions()
    arrived: list[int] = []

    def more_events_arrive() -> None:  # after the catch-up, before the switch: 10 new leads
        head = loaded.app.recorder.max_notification_id() or 0
        ingest(loaded, 90, seed=21)  # the same 80 journeys (duplicates, ignored) and 10 more
        arrived.append((loaded.app.recorder.max_notification_id() or 0) - head)

    def hold_until_a_reader_waits() -> None:  # inside the switch: a read must wait for it
        def waiting() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) "
                "AND wait_event_type = 'Lock'",
                (reader_pids,),
            ).fetchone()
            return bool(row and row[0])

        with loaded.db.connect() as conn:
            wait_for(waiting, timeout=30, every=0.02)
        blocked.append(len(seen))

    # the reader role exists and reads the views before the rebuild (created if need be)
    with loaded.db.connect() as conn, conn.transaction():
        create_reader_role(conn)
        grant(conn, loaded.db.schema)
    threads = [threading.Thread(target=reader), threading.Thread(target=funnel_reader)]
    for thread in threads:
        thread.start()
    try:
        with open_runtime(loaded.settings, rules=newer, database=loaded.db) as rt:
            report = rebuild(
                rt.app,
                rt.db,
                "leads",
                batch_size=300,
                before_switch=more_events_arrive,
                in_switch=hold_until_a_reader_waits,
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not errors, errors
    # a read arrived during the switch, waited for it, then read (the new table)
    assert blocked and len(seen) > blocked[0]
    assert funnel_reads and min(funnel_reads) > 0
    assert arrived and arrived[0] > 0 and report.caught_up >= arrived[0]  # inside the switch

    after = table_rows(loaded, "lead_state")
    assert len(after) == leads + 10  # the leads that arrived before the switch are in
    new_scores = {r[0]: r[7] for r in after}
    changed = [k for k in old_scores if new_scores[k] != old_scores[k]]
    assert changed, "new weights must change some scores"
    assert {r[8] for r in after} == {"default@2027.1"} or {r[8] for r in after} == {"2027.1"}

    # readers saw the old table or the new one, never an empty or half-built one
    counts = {count for count, _ in seen}
    assert seen and counts <= {leads, len(after)}, counts
    sums = {total for _, total in seen}
    old_sum = sum(old_scores.values())
    new_sum = sum(new_scores.values())
    assert sums <= {old_sum, new_sum}, (sums, old_sum, new_sum)

    # the reader role still reads the re-created views
    with loaded.db.connect() as conn:
        allowed = conn.execute(
            "SELECT has_table_privilege(%s, %s, 'SELECT')", (READER_ROLE, f"{read}.lead_current")
        ).fetchone()
    assert allowed == (True,)

    # a projector that was running all projections finds `leads` moved, resumes, and brings
    # the others up to date without touching leads' rows twice
    with pytest.raises(PositionMoved, match="'leads' moved"):
        live.run_batch(stale)
    assert live.run() > 0
    positions = live.positions()
    assert len(set(positions.values())) == 1 and live.lag() == 0
    assert table_rows(loaded, "lead_state") == after
    fresh = Projector(loaded.app, loaded.db)
    try:
        assert fresh.run() == 0
    finally:
        fresh.close()


def test_project_only_and_projections_cli(loaded: Runtime, leadengine: Any) -> None:
    ingest(loaded, 5, seed=3)
    code, out = leadengine("project", "--only", "history,costs", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["projected"] > 0
    assert [p["projection"] for p in doc["projections"]] == ["history", "costs"]
    assert all(p["lag"] == 0 for p in doc["projections"])
    code, out = leadengine("projections", "list", "--format", "json")
    listed = {p["projection"]: p for p in json.loads(out)}
    assert listed["leads"]["lag"] > 0 and listed["touchpoints"]["lag"] > 0
    assert listed["history"]["lag"] == 0 and listed["costs"]["lag"] == 0

    code, out = leadengine("projections", "rebuild", "touchpoints", "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["projection"] == "touchpoints"
    assert report["events_per_second"] > 0 and report["rows"]["lead_touchpoints"] > 0
    code, out = leadengine("projections", "list", "--format", "json")
    assert {p["projection"]: p["lag"] for p in json.loads(out)}["touchpoints"] == 0

    code, _ = leadengine("projections", "rebuild", "scores")
    assert code == 2
    assert (
        "unknown projection 'scores': expected one of leads, touchpoints" in (leadengine.stderr[-1])
    )
    code, _ = leadengine("projections", "rebuild", "leads", "--workers", "0")
    assert code == 2 and "--workers: expected 1 or more" in leadengine.stderr[-1]
    code, _ = leadengine("project", "--only", "leads,nope")
    assert code == 2 and "--only: unknown projection 'nope'" in leadengine.stderr[-1]


def test_the_switch_waits_for_a_long_reader_and_never_aborts_it(loaded: Runtime) -> None:
    """A reporting job holds the contract view in a transaction for 1.5 s: the switch gives
    up its locks (lock_timeout) and retries until the job is done; the job is never the one
    PostgreSQL aborts."""
    read = sql.Identifier(read_schema(loaded.db.schema))
    holding = threading.Event()
    outcome: list[Any] = []

    def long_report() -> None:
        try:
            with loaded.db.connect(autocommit=False) as conn:
                first = conn.execute(sql.SQL("SELECT count(*) FROM {}.lead_current").format(read))
                holding.set()
                time.sleep(1.5)
                again = conn.execute(sql.SQL("SELECT count(*) FROM {}.lead_current").format(read))
                counts = (first.fetchone(), again.fetchone())
                conn.commit()
                outcome.append(counts)  # after its commit: the switch can only end after this
        except BaseException as exc:  # reported by the test
            outcome.append(exc)
            holding.set()

    thread = threading.Thread(target=long_report)
    thread.start()
    assert holding.wait(30)
    report = rebuild(loaded.app, loaded.db, "leads")
    finished_first = list(outcome)  # what the job had done when the switch was over
    thread.join(timeout=60)
    [result] = outcome
    assert not isinstance(result, BaseException), result
    first, again = result
    assert first == again  # one transaction, one snapshot, undisturbed
    assert finished_first == [result]  # the switch waited for the report to commit
    assert report.rows["lead_state"] == first[0]


def test_drop_schema_leaves_nothing_beside_it(runtime: Runtime) -> None:
    """Tests and benches drop their schema: the read contract's schema goes with it."""
    from engine.postgres import db as dbmod

    schemas = (runtime.db.schema, read_schema(runtime.db.schema))
    with runtime.db.connect() as conn:
        query = "SELECT count(*) FROM pg_namespace WHERE nspname = ANY(%s)"
        assert conn.execute(query, (list(schemas),)).fetchone() == (2,)
        dbmod.drop_schema(runtime.db)
        assert conn.execute(query, (list(schemas),)).fetchone() == (0,)
