"""The projector's account book: settles all accounts from rows, writes only what changed, and
gives the same rows whatever order the per-aggregate rows arrive in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.aggregates.account import account_id
from engine.domain.rules import load_rules
from engine.projections.accounts import AccountBook

RULES = load_rules()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def state(key: str, name: str, domains: list[str], tier: int | None = None) -> tuple[object, ...]:
    return (account_id(key), key, name, domains, "software", 800, Decimal("60000000.00"), "US",
            None, tier, T0, f"u-{key}", 1)  # fmt: skip


def signals(
    n: int, domain: str | None, company: str | None, engagement: str, persona: str | None = None
) -> tuple[object, ...]:
    return (UUID(int=n), None, domain, company, T0 + timedelta(hours=n), f"e{n}",
            Decimal(engagement), persona)  # fmt: skip


STATES = [state("a1", "Acme Inc", ["acme.com"], 2), state("a2", "ACME", ["acme.io"], 1)]
SIGNALS = [
    signals(1, "acme.com", None, "50"),
    signals(2, "acme.com", None, "30"),
    signals(3, "gmail.com", "Acme", "12"),
    signals(4, "gmail.com", None, "0"),
]


def book(states: list[tuple[object, ...]], sigs: list[tuple[object, ...]]) -> AccountBook:
    b = AccountBook()
    for row in states:
        b.put_state(row)
    for row in sigs:
        b.put_signals(row)
    return b


def test_settle_decides_scores_and_then_writes_only_changes() -> None:
    b = book(STATES, SIGNALS)
    first = b.settle(RULES)
    assert len(first["account_members"]) == 4 and len(first["account_scores"]) == 2
    members = {r[0].int: (r[2], r[3]) for r in first["account_members"]}
    assert members == {1: ("a1", "domain"), 2: ("a1", "domain"), 3: ("a2", "name"), 4: (None, None)}
    scores = {r[1]: r for r in first["account_scores"]}
    assert scores["a1"][5:7] == (2, 2) and scores["a1"][8] is not None  # members, engaged, MQA
    assert scores["a1"][9] == "e2" and scores["a1"][10] == RULES.ref  # trigger, rules
    assert b.settle(RULES) == {
        "account_members": [],
        "account_scores": [],
        "account_buying_group": [],
    }
    b.put_signals(signals(4, "acme.io", None, "0"))  # lead 4 now writes from a2's domain
    again = b.settle(RULES)
    assert [r[0].int for r in again["account_members"]] == [4]
    assert [r[1] for r in again["account_scores"]] == ["a2"]


def test_rows_do_not_depend_on_the_order_they_arrive_in() -> None:
    expected = book(STATES, SIGNALS).settle(RULES)
    rnd = random.Random(5)
    for _ in range(5):
        states, sigs = list(STATES), list(SIGNALS)
        rnd.shuffle(states)
        rnd.shuffle(sigs)
        got = book(states, sigs).settle(RULES)
        for table, rows in expected.items():
            assert sorted(got[table], key=str) == sorted(rows, key=str)


_T = st.integers(0, 5).map(lambda h: T0 + timedelta(hours=h))
_STATE = st.builds(
    lambda key, name, domains, tier, employees, at: (
        account_id(key),
        key,
        name,
        domains,
        "software",
        employees,
        Decimal("60000000.00"),
        "US",
        None,
        tier,
        at,
        f"u-{key}-{at:%H}",
        1,
    ),
    st.sampled_from(["a1", "a2", "a3", "a4"]),
    st.sampled_from(["Acme Inc", "ACME", "Beta GmbH", "Gamma"]),
    st.lists(st.sampled_from(["acme.com", "acme.io", "beta.com"]), max_size=2, unique=True).map(
        sorted
    ),
    st.sampled_from([None, 1, 2]),
    st.sampled_from([50, 500, 5000]),
    _T,
)
_SIGNALS = st.builds(
    lambda n, named, domain, company, at, engagement, persona: (
        UUID(int=n),
        named,
        domain,
        company,
        at,
        f"e{n}-{at:%d%H}",
        Decimal(engagement),
        persona,
    ),
    st.integers(1, 8),
    st.sampled_from([None, None, "a1", "a3", "a9"]),
    st.sampled_from([None, "acme.com", "eu.acme.com", "acme.io", "beta.com", "gmail.com"]),
    st.sampled_from([None, "Acme", "ACME Inc.", "Beta", "Gamma Ltd"]),
    _T,
    st.sampled_from(["0", "5", "12", "40"]),
    st.sampled_from([None, "decision-maker", "champion", "user"]),
)
_BATCHES = st.lists(
    st.lists(st.one_of(_STATE, _SIGNALS, _SIGNALS, _SIGNALS), min_size=1, max_size=4),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None)
@given(_BATCHES)
def test_incremental_settle_gives_the_rows_of_settling_everything(
    batches: list[list[tuple[object, ...]]],
) -> None:
    """Batch after batch, the incremental book (only what the batch's leads touch) writes and
    holds the same rows as a book that matches and scores everything every time, MQA included."""
    inc, full = AccountBook(), AccountBook()
    for batch in batches:
        for row in batch:
            for b in (inc, full):
                (b.put_state if len(row) == 13 else b.put_signals)(row)
        got, want = inc.settle(RULES), full.settle(RULES, everything=True)
        for table, rows in want.items():
            assert sorted(map(str, got[table])) == sorted(map(str, rows)), table
        assert (inc.members, inc.scores, inc.groups) == (full.members, full.scores, full.groups)
