"""Round trips the consumer no longer pays per unit of work, on PostgreSQL, with every answer
the same: the pool's checkout sends nothing to a healthy connection (engine/postgres/
poolcheck.py), a batch reads the account directory once (`BatchReads`), and a batch starts
from its accounts as stored, decisions the projector recorded on them included (it would
otherwise lose a version race to them and be redone)."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.domain.accounts.matching import MemberDecision, name_words
from engine.domain.contract import validate_event
from engine.postgres import account_directory
from engine.postgres.account_directory import AccountDirectory, PostgresAccountDirectory
from engine.postgres.store import datastore_of
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import raw
from tests.integration.test_account_owner_routing import _account, _ingest, _mql


def _observer(rt: Runtime) -> psycopg.Connection[Any]:
    return rt.db.connect()


def _last_change(obs: psycopg.Connection[Any]) -> Any:
    """The latest moment any other session of the database ran a statement."""
    row = obs.execute(
        "SELECT max(state_change) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()
    assert row is not None
    return row[0]


def test_a_checkout_sends_nothing_to_a_healthy_connection(runtime: Runtime) -> None:
    datastore = datastore_of(runtime.app.recorder)
    assert datastore is not None
    with datastore.get_connection() as conn:
        conn.execute("SELECT 1")
    with _observer(runtime) as obs:
        before = _last_change(obs)
        time.sleep(0.05)
        for _ in range(5):
            with datastore.get_connection():
                pass
        assert _last_change(obs) == before  # the pre-ping ran an (empty) statement each time


def test_a_connection_the_server_ended_is_not_handed_out(runtime: Runtime) -> None:
    datastore = datastore_of(runtime.app.recorder)
    assert datastore is not None
    pids = set()
    with datastore.get_connection() as a, datastore.get_connection() as b:
        pids = {a.info.backend_pid, b.info.backend_pid}
    with _observer(runtime) as obs:
        for pid in pids:
            obs.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    for _ in range(3):
        with datastore.get_connection() as conn:
            assert conn.info.backend_pid not in pids
            assert conn.execute("SELECT 1").fetchone() is not None


def test_the_first_request_after_the_server_ended_every_connection_succeeds(
    runtime: Runtime,
) -> None:
    """A failover, or `pg_terminate_backend` of every pooled connection: the next request
    reconnects. A hostile trial found it waiting the pool timeout and failing once, the server
    up: psycopg_pool slept 1 s, then 2 s, ... after each connection that failed the check."""
    datastore = datastore_of(runtime.app.recorder)
    assert datastore is not None
    pool = datastore.pool
    with contextlib.ExitStack() as held:  # the pool at its largest, every connection used
        conns = [held.enter_context(datastore.get_connection()) for _ in range(pool.max_size)]
        pids = [c.info.backend_pid for c in conns]
    with _observer(runtime) as obs:
        obs.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        while obs.execute(  # until the server has closed them all (their sockets readable)
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            time.sleep(0.01)
    assert pool.get_stats()["pool_available"] == pool.max_size  # every one of them dead
    _ingest(runtime, _mql("after-failover", "pat@example.com", 1))  # a write, then a read
    assert len(runtime.app.lead_events("after-failover")) > 1
    with datastore.get_connection() as conn:
        assert conn.info.backend_pid not in pids


def test_a_batch_reads_the_directory_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(
        runtime,
        [
            _account("a1", 0, name="Acme Inc.", domains=["acme.com"], owner="ana", tier=2),
            _account("a2", 0, name="ACME LLC", tier=1, owner="bo"),
        ],
    )
    reads: list[str] = []
    for name in ("candidates", "snapshot"):
        original = getattr(PostgresAccountDirectory, name)

        def spy(self: Any, *args: Any, _name: str = name, _f: Any = original) -> Any:
            reads.append(_name)
            return _f(self, *args)

        monkeypatch.setattr(PostgresAccountDirectory, name, spy)
    events = [
        *_mql("l1", "pat@eu.acme.com", 1),
        *_mql("l2", "kim@gmail.com", 1, company="Acme"),
        *_mql("l3", "lee@gmail.com", 1, company="Globex"),
        *_mql("l4", "max@acme.com", 1),
        *_mql("l5", "sam@acme.com", 1),
    ]
    _ingest(runtime, events)
    assert reads == ["snapshot"]
    owners = {k: runtime.app.get_lead(k).owner for k in ("l1", "l2", "l4", "l5")}
    assert owners == {"l1": "ana", "l2": "bo", "l4": "ana", "l5": "ana"}
    assert runtime.app.get_lead("l3").queue not in (None, "account-owner")


def test_a_batch_of_account_events_reads_the_directory_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each CRM account's update asks which provisional accounts it adopts: from the batch's
    one read of the directory, not a query each."""
    reads: list[str] = []
    for name in ("candidates", "snapshot", "provisional_under", "_provisional"):
        original = getattr(PostgresAccountDirectory, name)

        def spy(self: Any, *args: Any, _name: str = name, _f: Any = original, **kw: Any) -> Any:
            reads.append(_name)
            return _f(self, *args, **kw)

        monkeypatch.setattr(PostgresAccountDirectory, name, spy)
    asked: list[list[str]] = []
    original_under = AccountDirectory.provisional_under

    def under(self: AccountDirectory, domains: Any) -> list[str]:
        asked.append(list(domains))
        return original_under(self, domains)

    monkeypatch.setattr(AccountDirectory, "provisional_under", under)
    events = [_account(f"a{i}", 0, name=f"A{i}", domains=[f"a{i}.com"]) for i in range(5)]
    _ingest(runtime, [*events, _account("a9", 0, name="Acme", domains=["acme.com"])])
    assert reads == ["snapshot"]
    assert len(asked) == 6  # every account asked, the snapshot answered


def test_a_directory_larger_than_the_snapshot_is_asked_once_per_question(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    _ingest(runtime, [_account("a1", 0, name="Acme Inc.", domains=["acme.com"], owner="ana")])
    monkeypatch.setattr(account_directory.BatchReads.__init__, "__defaults__", (0,))
    asked: list[tuple[Any, ...]] = []
    original = PostgresAccountDirectory.candidates

    def spy(self: Any, *args: Any) -> Any:
        asked.append(args)
        return original(self, *args)

    monkeypatch.setattr(PostgresAccountDirectory, "candidates", spy)
    _ingest(runtime, [*_mql("l1", "pat@acme.com", 1), *_mql("l2", "kim@acme.com", 1)])
    assert len(asked) == len(set(asked)) >= 1
    assert runtime.app.get_lead("l1").owner == runtime.app.get_lead("l2").owner == "ana"


ROWS = st.lists(
    st.tuples(
        st.sampled_from(["Acme Inc.", "ACME", "Acme Widgets", "Initech", None]),
        st.lists(st.sampled_from(["acme.com", "eu.acme.com", "initech.com", "com"]), max_size=2),
    ),
    max_size=8,
)
QUESTIONS = st.lists(
    st.tuples(
        st.sampled_from([None, "k0", "k1", "k5"]),
        st.sampled_from([None, "acme.com", "x.eu.acme.com", "initech.com", "other.org"]),
        st.sampled_from([None, "acme", "acme inc", "initech", "acme_", "ac%"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=ROWS, questions=QUESTIONS)
def test_the_snapshot_answers_as_the_table_does(
    runtime: Runtime, rows: list[Any], questions: list[Any]
) -> None:
    """What `BatchReads` answers from the directory read whole is what the table's query
    answers, for names and domains that share words, parents and LIKE's special characters."""
    datastore = datastore_of(runtime.app.recorder)
    assert datastore is not None
    directory = PostgresAccountDirectory(datastore)
    table = sql.Identifier(runtime.db.schema, account_directory.TABLE)
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    directory.put(
        (f"k{i}", name, name_words(name), list(dict.fromkeys(domains)), None, None, at)
        for i, (name, domains) in enumerate(rows)
    )
    whole = directory.snapshot(100)
    assert isinstance(whole, AccountDirectory)
    for q in questions:
        assert sorted(whole.candidates(*q), key=repr) == sorted(directory.candidates(*q), key=repr)


def test_a_batch_starts_from_the_decisions_the_projector_recorded(
    runtime: Runtime, settings: Settings
) -> None:
    """The projector beside the consumer records decisions on accounts; the consumer's cached
    account is brought up to date before the batch decides, not found stale at the save."""
    _ingest(runtime, [_account("a1", 0, name="Acme Inc.", domains=["acme.com"])])
    with open_runtime(settings, rules=runtime.rules, database=runtime.db) as projector:
        decision = MemberDecision(
            account="a1",
            lead_id=str(uuid.uuid4()),
            joined=True,
            rule="domain",
            reason="acme.com",
            candidates=("a1",),
            rules_version="test",
            decided_at=datetime(2026, 1, 2, tzinfo=UTC),
        )
        projector.app.record_account_decisions([], [decision])
    # one try, as the consumer's first attempt (`store_racing` would redo a lost one)
    runtime.app.ingest([validate_event(_account("a1", 1, owner="ana"))])
    event = raw("account.updated", "a1", {"tier": 2}, days=2)
    runtime.app.ingest([validate_event(event)])
