"""Account updates in one big batch on PostgreSQL: the save writes the account directory and
checks its domain claims in pipeline mode (engine/postgres/account_directory.py); a batch of
any size is held, and the directory after one batch is the directory after the same events
one at a time."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.domain.contract import validate_event
from engine.postgres import account_directory
from engine.runtime import Runtime
from tests.factory import raw
from tests.integration.test_account_owner_routing import _directory

#: names sharing words and legal suffixes (what the name index and tie-breaks see)
NAMES = ["Acme Inc.", "ACME LLC", "Acme", "Acme Widgets GmbH", "Initech", "Initech Ltd"]
#: one update: (account, name or None, domains (indices into the example's pool), owner, tier)
UPDATES = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from([None, *NAMES]),
        st.lists(st.integers(0, 5), max_size=3, unique=True),
        st.sampled_from([None, "ana", "bo"]),
        st.sampled_from([None, 1, 2, 3]),
    ),
    min_size=1,
    max_size=20,
)


def _account(key: str, i: int, **data: Any) -> dict[str, Any]:
    return raw("account.updated", key, data, days=i / 10_000)


def _events(prefix: str, updates: list[Any], pool: list[str]) -> list[dict[str, Any]]:
    out = []
    for i, (a, name, domains, owner, tier) in enumerate(updates):
        data: dict[str, Any] = {"domains": [pool[d] for d in domains]}
        data.update({k: v for k, v in (("name", name), ("owner", owner), ("tier", tier)) if v})
        out.append(_account(f"{prefix}-{a}", i, **data))
    return out


def _rows(runtime: Runtime, prefix: str) -> dict[str, tuple[Any, ...]]:
    return {
        k.removeprefix(prefix): v
        for k, v in _directory(runtime).items()
        if k.startswith(prefix + "-")
    }


def _save(runtime: Runtime, rows: list[account_directory.Row]) -> None:
    """`write` as the recorder runs it: pipeline mode, in the save's transaction."""
    with (
        runtime.db.connect() as conn,
        conn.pipeline(),
        conn.transaction(),
        conn.cursor() as cur,
    ):
        account_directory.write(cur, runtime.db.schema, rows)


def test_thousands_of_account_updates_in_one_batch_are_held(runtime: Runtime) -> None:
    """4,000 accounts' updates in one `ingest` (names shared by 80 accounts each, every
    tenth claiming a shared domain too): this failed with psycopg's "the last operation
    didn't produce records (INSERT 0 1)" when the claim check read its SELECT on the cursor
    the upserts' pipelined results were still arriving on (from about 2,500 rows here)."""
    n = 4000
    events = [
        _account(
            f"big-{i}",
            i,
            name=f"Co {i % 50} Inc.",
            domains=[f"d{i}.example.com", *(["shared.example.com"] if i % 10 == 0 else [])],
        )
        for i in range(n)
    ]
    runtime.app.ingest([validate_event(e) for e in events])
    rows = _directory(runtime)
    assert len(rows) == n
    for i in range(n):
        name, words, domains, _owner, _tier, _at = rows[f"big-{i}"]
        assert (name, words) == (f"Co {i % 50} Inc.", f"co {i % 50} inc")
        assert domains == [f"d{i}.example.com", *(["shared.example.com"] if i % 10 == 0 else [])]


def test_the_claim_check_reads_its_own_results_in_a_pipelined_save(runtime: Runtime) -> None:
    """`write` as the recorder runs it (pipeline mode, in the save's transaction), 15 saves
    of 3,000 rows: before the check had its own cursor, about one save in three failed here
    (whether an upsert's result arrives while the SELECT is sent is a matter of timing, so
    one save was not enough to fail every time)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for save in range(15):
        rows: list[account_directory.Row] = [
            (f"pipe-{save}-{i}", f"Co {i % 50}", f"co {i % 50}", [f"p{i}.example.com"], None,
             None, at)
            for i in range(3000)
        ]  # fmt: skip
        _save(runtime, rows)
    rows_now = _directory(runtime)
    assert sum(k.startswith("pipe-") for k in rows_now) == 15 * 3000
    assert rows_now["pipe-14-2999"] == ("Co 49", "co 49", ["p2999.example.com"], None, None, at)


@pytest.mark.parametrize("side", ["crm", "provisional"])
def test_a_claim_conflict_anywhere_in_a_big_batch_fails_the_whole_save(
    runtime: Runtime, side: str
) -> None:
    """One query a side still finds the one row of 3,000 that makes a provisional and a CRM
    account claim one domain, names it, and nothing of the save commits."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    tag = uuid.uuid4().hex[:8]
    domain = f"{tag}.com"
    if side == "crm":  # a provisional account stored; a CRM account in the batch claims it
        _save(runtime, [(f"provisional/eu.{domain}", None, None, [f"eu.{domain}"], None, None, at)])
        culprit: account_directory.Row = (f"c-{tag}", "X", "x", [domain], None, None, at)
    else:  # a CRM account stored; a provisional account in the batch under its domain
        _save(runtime, [(f"c-{tag}", "X", "x", [domain], None, None, at)])
        culprit = (f"provisional/eu.{domain}", None, None, [f"eu.{domain}"], None, None, at)
    rows: list[account_directory.Row] = [
        (f"f{tag}-{i}", "Co", "co", [f"f{i}.{tag}.org"], None, None, at) for i in range(3000)
    ]
    rows.insert(2500, culprit)
    with pytest.raises(psycopg.errors.UniqueViolation, match=re.escape(culprit[0] + " raced")):
        _save(runtime, rows)
    assert not any(k.startswith(f"f{tag}-") for k in _directory(runtime))
    assert len([k for k in _directory(runtime) if tag in k]) == 1


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(updates=UPDATES)
def test_the_directory_after_one_batch_is_the_directory_after_each_update_alone(
    runtime: Runtime, updates: list[Any]
) -> None:
    tag = uuid.uuid4().hex[:8]
    pool = [f"x{tag}.com", f"eu.x{tag}.com", f"y{tag}.com", "gmail.com", f"y{tag}.org", "z.io"]
    batch, alone = f"b{tag}", f"s{tag}"
    runtime.app.ingest([validate_event(e) for e in _events(batch, updates, pool)])
    for event in _events(alone, updates, pool):
        runtime.app.ingest([validate_event(event)])
    assert _rows(runtime, batch) == _rows(runtime, alone)
    assert set(_rows(runtime, batch)) == {f"-{a}" for a, *_ in updates}


#: provisional accounts' domains and what a CRM account may claim or drop (parents, children)
PROVISIONAL_DOMAINS = ["acme.com", "eu.acme.com", "x.eu.acme.com", "acme.co", "initech.io"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    held=st.dictionaries(st.sampled_from(PROVISIONAL_DOMAINS), st.booleans(), max_size=5),
    asked=st.lists(st.sampled_from([*PROVISIONAL_DOMAINS, "com", "co", "y.acme.com"]), max_size=3),
)
def test_provisional_lookups_agree_in_memory_and_on_postgres(
    runtime: Runtime, held: dict[str, bool], asked: list[str]
) -> None:
    """`provisional_under` (claiming now) and `provisional_keys_under` (any) share one query
    shape (`_provisional`): the in-memory directory and PostgreSQL's answer alike, for
    claiming and adopted (no domains) provisional accounts, asked for their domain, a parent
    or a child."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    rows: list[account_directory.Row] = [
        (f"provisional/{d}", d, d, [d] if claiming else [], None, None, at)
        for d, claiming in held.items()
    ]
    with runtime.db.connect() as conn:  # straight in: the claim check is not under test
        conn.execute(f"DELETE FROM {runtime.db.schema}.account_directory")
        for row in rows:
            conn.execute(
                f"INSERT INTO {runtime.db.schema}.account_directory "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                row,
            )
    memory = account_directory.AccountDirectory()
    memory.put(rows)
    stored = runtime.app.account_directory
    assert isinstance(stored, account_directory.PostgresAccountDirectory)
    for lookup in ("provisional_under", "provisional_keys_under"):
        got = getattr(stored, lookup)(asked)
        assert got == getattr(memory, lookup)(asked), lookup
    want_claiming = sorted(
        f"provisional/{d}"
        for d, claiming in held.items()
        if claiming and account_directory.under(d, asked)
    )
    assert stored.provisional_under(asked) == want_claiming
    assert stored.provisional_keys_under(asked) == sorted(
        f"provisional/{d}" for d in held if account_directory.under(d, asked)
    )
