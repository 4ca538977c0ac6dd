"""The batch's changed accounts, found incrementally, are the rows a scan of the whole batch
finds (what `_match_now` did for every lead routed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.aggregates.account import Account, account_id
from engine.domain.accounts.profile import fold
from engine.postgres import account_directory
from engine.services.batch_accounts import BatchAccounts

KEYS = ["acme", "globex", "initech"]
START = datetime(2026, 1, 1, tzinfo=UTC)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), st.sampled_from(KEYS)),
        st.tuples(st.just("update"), st.sampled_from(KEYS), st.sampled_from(["a", "b", "c"])),
        st.tuples(st.just("lead")),
        st.tuples(st.just("new batch")),
    ),
    max_size=30,
)


def _update(account: Account, name: str, domain: str, at: datetime) -> None:
    data = {"name": name, "domains": [domain]}
    account.record(event_id=str(uuid4()), source="crm", occurred_at=at, data=data)


def _scan(touched: dict[UUID, Any]) -> list[account_directory.Row]:
    return [
        account_directory.row_of(fold(a.key, a.updates))
        for a in touched.values()
        if isinstance(a, Account) and a.pending_events and a.updates
    ]


@settings(max_examples=200, deadline=None)
@given(steps=steps, stored=st.sets(st.sampled_from(KEYS)))
def test_changed_rows_equal_a_scan_of_the_batch(
    steps: list[tuple[str, ...]], stored: set[str]
) -> None:
    batch = BatchAccounts()
    touched: dict[UUID, Any] = {}
    accounts: dict[str, Account] = {}
    for key in stored:  # committed before the batch: updates, no pending events
        accounts[key] = Account(key=key)
        _update(accounts[key], key.title(), f"{key}.com", START)
        accounts[key].collect_events()
    for n, step in enumerate(steps):
        if step[0] == "new batch":
            touched = {}
        elif step[0] == "lead":
            touched[uuid4()] = object()
        else:
            key = step[1]
            account = accounts.setdefault(key, Account(key=key))
            touched.setdefault(account_id(key), account)
            if step[0] == "update":
                at = START + timedelta(hours=n)
                _update(account, f"{key} {step[2]}", f"{step[2]}.{key}.com", at)
        assert batch.changed_rows(touched) == _scan(touched)
