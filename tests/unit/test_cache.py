"""The aggregate caches are bounded by weight (facts held) as well as by count."""

from __future__ import annotations

from types import SimpleNamespace
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.services.cache import BudgetCache, Budgeted, weight


def agg(facts: int) -> SimpleNamespace:
    return SimpleNamespace(facts=[None] * facts)


def uid(i: int) -> UUID:
    return UUID(int=i)


def test_weight_is_one_plus_the_facts() -> None:
    assert weight(agg(0)) == 1
    assert weight(agg(7)) == 8
    assert weight(object()) == 1  # an aggregate without a history (a campaign, a roster)


def test_the_oldest_go_first_when_the_weight_passes_the_budget() -> None:
    cache = Budgeted(maxsize=100, budget=10)
    cache[uid(1)] = agg(3)  # 4
    cache[uid(2)] = agg(3)  # 8
    cache[uid(1)] = cache[uid(1)]  # used again: the young end
    cache[uid(3)] = agg(2)  # 11 > 10: 2 is the oldest now
    assert list(cache) == [uid(1), uid(3)] and cache.total == 7


def test_the_aggregate_just_set_stays_even_if_it_alone_passes_the_budget() -> None:
    cache = Budgeted(maxsize=100, budget=10)
    cache[uid(1)] = agg(1)
    cache[uid(2)] = agg(50)
    assert list(cache) == [uid(2)] and cache.total == 51


def test_an_aggregate_that_grew_in_place_is_weighed_again_when_set() -> None:
    cache = Budgeted(maxsize=100, budget=10)
    a = agg(1)
    cache[uid(1)] = a
    cache[uid(2)] = agg(1)
    a.facts.extend([None] * 7)
    cache[uid(1)] = a  # 9 + 2 > 10: the other goes
    assert list(cache) == [uid(1)] and cache.total == 9


def test_the_write_side_cache_misses_with_keyerror_and_evicts_on_request() -> None:
    cache = BudgetCache(maxsize=2, budget=1000)
    cache.put(uid(1), agg(1))
    cache.put(uid(2), agg(1))
    assert cache.get(uid(1)) is not None  # a hit: 1 is the youngest now
    cache.put(uid(3), agg(1))  # count 3 > 2: 2 goes
    with pytest.raises(KeyError):
        cache.get(uid(2))
    assert cache.get(uid(1), evict=True) is not None
    with pytest.raises(KeyError):
        cache.get(uid(1))
    assert list(cache.cache) == [uid(3)] and cache.cache.total == 2


ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "pop", "del", "popitem", "clear"]),
        st.integers(0, 9),
        st.integers(0, 12),
    ),
    max_size=60,
)


@given(ops, st.integers(1, 6), st.integers(1, 40))
def test_bounds_and_total_hold_whatever_the_operations(
    steps: list[tuple[str, int, int]], maxsize: int, budget: int
) -> None:
    cache = Budgeted(maxsize, budget)
    for op, key, facts in steps:
        k = uid(key)
        if op == "set":
            cache[k] = agg(facts)
            assert k in cache  # the one just set is kept
        elif op == "pop":
            cache.pop(k, None)
        elif op == "del" and k in cache:
            del cache[k]
        elif op == "popitem" and cache:
            cache.popitem(last=False)
        elif op == "clear":
            cache.clear()
        assert cache.total == sum(weight(v) for v in cache.values())
        assert set(cache.weights) == set(cache)
        assert len(cache) <= maxsize
        assert len(cache) <= 1 or cache.total <= budget
