"""The account book on the tables (`TableLeads`: each lead's rows in PostgreSQL, the book
holding only per-account state) decides what the book with every row in memory decides, batch
after batch, with streaming chunks of two rows; a projector streaming two rows at a time stores
and projects what one with the defaults does; and the book's memory does not grow with the
leads."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import Cursor, sql

from engine.aggregates.account import account_id
from engine.domain.generator import generate, lines
from engine.domain.rules import Rules
from engine.postgres.db import Database
from engine.projections import account_leads, accounts
from engine.projections.account_leads import MemoryLeads, Row, TableLeads
from engine.projections.accounts import AccountBook
from engine.runtime import Runtime
from engine.settings import Settings
from tests.integration.test_bounded_memory import (
    account_model,
    ingest,
    project,
    read_model,
    runtime_with,
)
from tests.unit.test_account_book import _BATCHES, BY_LEADS, RULES, STORED, T0, Recorder

LEAD_TABLES = ("account_signals", "account_members")


@contextmanager
def chunks_of(n: int) -> Iterator[None]:
    """Stream the tables `n` rows at a time (a tiny budget: every chunk boundary is crossed)."""
    names = {
        account_leads: ("CHUNK", "FETCH"),
        accounts: ("CHUNK", "SCORES_CHUNK", "REDECIDE", "SCORE_POINTS"),
    }
    saved = {(m, k): getattr(m, k) for m, ks in names.items() for k in ks}
    for module, name in saved:
        setattr(module, name, n)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def got_into(got: dict[str, list[Row]]) -> accounts.Sink:
    def sink(table: str, rows: list[Row]) -> None:
        got[table].extend(rows)

    return sink


def on_tables(cur: Cursor[Any], schema: str) -> TableLeads:
    def write(table: str, rows: list[Row]) -> None:
        accounts.upsert(cur, schema, table, rows)

    return TableLeads(cur, schema, write)


def table_rows(cur: Cursor[Any], schema: str, table: str) -> dict[UUID, Row]:
    names = accounts.COLUMNS[table]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.Identifier(schema, table)
    )
    return {r[0]: tuple(r) for r in cur.execute(query)}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_BATCHES, st.sampled_from([RULES, BY_LEADS]))
def test_the_book_on_the_tables_decides_what_the_book_in_memory_does(
    database: Database, batches: list[list[tuple[object, ...]]], rules: Rules
) -> None:
    """Same member rows (in the table / in memory), same score and buying-group rows written
    (through a sink, two accounts at a time), same decisions, batch after batch, incremental and
    (on the first batch) streamed."""
    schema = database.schema
    with database.connect() as conn, chunks_of(2), conn.transaction() as tx, conn.cursor() as cur:
        for table in LEAD_TABLES:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
        mem, tab = AccountBook(MemoryLeads()), AccountBook(on_tables(cur, schema))
        mem_rec, tab_rec = Recorder(rules), Recorder(rules)
        for batch in batches:
            for row in batch:
                for b in (mem, tab):
                    (b.put_state if len(row) == STORED + 1 else b.put_signals)(row)
            want = mem.settle(rules, decide=True)
            got: dict[str, list[Row]] = {t: [] for t in want}
            sink = got_into(got)
            left = tab.settle(rules, decide=True, sink=sink)  # every row to the sink
            assert left == {t: [] for t in want}
            mem_rec.record(mem)
            tab_rec.record(tab)
            assert got == want
            assert isinstance(mem.leads, MemoryLeads)
            assert table_rows(cur, schema, "account_members") == mem.leads.member_rows
            assert table_rows(cur, schema, "account_signals") == mem.leads.signals_rows
            assert (tab.scores, tab.groups, tab.states) == (mem.scores, mem.groups, mem.states)
            key = lambda d: (d.account, d.lead_id, d.joined)  # noqa: E731
            assert sorted(tab.member_decisions, key=key) == sorted(mem.member_decisions, key=key)
            assert [d for d, _ in tab.mqa_decisions] == [d for d, _ in mem.mqa_decisions]
        assert tab_rec.stored == mem_rec.stored
        raise psycopg.Rollback(tx)


def _rows(leads: int) -> tuple[list[Row], list[Row]]:
    """20 accounts, `leads` leads on their domains (some on free mail, naming an account)."""
    states = [
        (
            account_id(f"k{a}"),
            f"k{a}",
            f"Firm {a} Inc",
            [f"firm{a}.example"],
            "software",
            800,
            None,
            "US",
            None,
            1 + a % 3,
            T0,
            f"u{a}",
            1,
            None,
        )
        for a in range(20)
    ]
    signals = [
        (
            UUID(int=n + 1),
            f"k{n % 20}" if n % 7 == 0 else None,
            "gmail.com" if n % 10 == 0 else f"firm{n % 20}.example",
            f"Firm {n % 20}",
            T0 + timedelta(minutes=n),
            f"e{n}",
            Decimal(n % 40),
            None,
        )
        for n in range(leads)
    ]
    return states, signals


def _held_after_settle(database: Database, leads: int) -> int:
    """Bytes the book holds (traced) after settling `leads` leads from the tables."""
    states, signals = _rows(leads)
    schema = database.schema
    with database.connect() as conn, conn.transaction() as tx, conn.cursor() as cur:
        for table in LEAD_TABLES:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
        accounts.copy(cur, schema, "account_signals", signals)
        del signals
        gc.collect()
        tracemalloc.start()
        try:
            book = AccountBook(on_tables(cur, schema))
            for row in states:
                book.put_state(row)
            book.settle(RULES)
            book.put_signals(
                (UUID(int=3), None, "firm2.example", "Firm 2", T0, "x", Decimal(1), None)
            )
            book.settle(RULES)  # and an incremental one
            book.leads = MemoryLeads()  # the cursor's buffers are not the book's
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del book
        raise psycopg.Rollback(tx)
    return held


def test_the_book_holds_no_row_per_lead(database: Database) -> None:
    """Ten times the leads, about the same memory held (the book in memory held about 2.4 KB a
    lead: 3,600 more leads would be about 8.6 MB)."""
    small = _held_after_settle(database, 400)
    large = _held_after_settle(database, 4_000)
    assert large - small < 400_000, (small, large)


def _peak_of_a_batch(database: Database, leads: int) -> int:
    """Peak bytes (traced) of an incremental settle after `leads` leads on 20 accounts, the
    batch one new lead on each account: every account's lead count moves (its contested leads
    are looked up) and every account is scored again (its members' rows read)."""
    states, signals = _rows(leads)
    schema = database.schema

    def discard(_table: str, _rows: list[Row]) -> None:
        pass

    with database.connect() as conn, conn.transaction() as tx, conn.cursor() as cur:
        for table in LEAD_TABLES:
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table)))
        accounts.copy(cur, schema, "account_signals", signals)
        del signals
        book = AccountBook(on_tables(cur, schema))
        for row in states:
            book.put_state(row)
        book.settle(RULES, decide=True, sink=discard)
        for a in range(20):
            lead = UUID(int=1_000_000 + a)
            at = T0 + timedelta(days=30)
            book.put_signals(
                (lead, None, f"firm{a}.example", f"Firm {a}", at, f"n{a}", Decimal(3), None)
            )
        gc.collect()
        tracemalloc.start()
        try:
            book.settle(RULES, decide=True, sink=discard)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        raise psycopg.Rollback(tx)
    return peak


def test_a_batch_holds_one_account_of_members_at_a_time(database: Database) -> None:
    """A batch that moves every account holds one account's members at a time (and the ids of
    the contested leads only), not every account's members and score rows: ten times the
    leads, the peak of the settle grows by about one account's members (0.15 MB at 400 leads,
    0.54 MB at 4,000). It read every account's rows and held every score row at once: 0.63 MB
    and 5.8 MB, about 1.4 KB a lead."""
    with chunks_of(50):
        small = _peak_of_a_batch(database, 400)
        large = _peak_of_a_batch(database, 4_000)
    assert large - small < 1_000_000, (small, large)


def test_a_tiny_streaming_budget_projects_and_stores_the_same(
    settings: Settings, rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: the same stream (accounts, free mail, shared names) ingested into two
    schemas and projected, one with the book streaming 2 rows and 2 score rows at a time, the
    other with the defaults: the same read model, account tables and recorded account
    decisions (each account's version and MQA: its decision events)."""
    data = [line.encode() for line in lines(generate(60, seed=11))]
    with (
        runtime_with(settings, rules, 10_000) as tiny,
        runtime_with(settings, rules, 10_000) as default,
    ):
        for rt in (tiny, default):
            report = ingest(rt, data, [])
            assert report.accepted > 0 and report.rejected == 0
        with chunks_of(2):
            project(tiny, [])
        project(default, [])
        assert read_model(tiny) == read_model(default)
        got, want = account_model(tiny), account_model(default)
        assert got == want and want["account_members"] and want["account_scores"]
        assert decisions(tiny) == decisions(default)
        assert any(mqa is not None for _key, _version, mqa in decisions(default))


def decisions(rt: Runtime) -> list[tuple[Any, ...]]:
    """Each account's version and recorded MQA (what its decision events made)."""
    with rt.db.connect() as conn:
        query = sql.SQL("SELECT account_key, version, mqa FROM {} ORDER BY 1").format(
            sql.Identifier(rt.db.schema, "account_state")
        )
        return [tuple(r) for r in conn.execute(query)]
