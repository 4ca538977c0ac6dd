"""The packed stand-ins of a snapshot (engine/services/asof_lazy.py) act as the plain list and
dicts they replace, through any mix of appends, writes, reads and re-packing (a snapshot taken
from a snapshot), opened or not; and the reads an as-of fold makes do not open them."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.facts import Fact
from engine.postgres.snapshots import dumps
from engine.services.asof_lazy import PackedFacts, PackedFirsts, PackedSeen

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _fact(n: int, event_id: str, source: str) -> Fact:
    return Fact(event_id, "touch.page_viewed", source, T0 + timedelta(minutes=n), {"n": n}, n)


class _Plain:
    """What a lead holds without snapshots: the list and the two dicts, as the fold fills them."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self.seen: dict[tuple[str, str], int] = {}
        self.firsts: dict[str, Fact] = {}

    def add(self, fact: Fact) -> Fact:
        self.seen[(fact.source, fact.event_id)] = len(self.facts)
        self.facts.append(fact)
        return self.firsts.setdefault(fact.event_id, fact)


class _Packed(_Plain):
    def repack(self, triggers: set[str]) -> None:
        """As `AsOfLead.__getstate__`, then through pickle as a snapshot goes."""
        facts = PackedFacts.pack(self.facts, dumps)
        seen = PackedSeen.pack(self.seen, dumps)
        firsts = PackedFirsts.pack(self.firsts, facts, triggers)
        self.facts, self.seen, self.firsts = pickle.loads(dumps((facts, seen, firsts)))


ids = st.sampled_from([f"e{n}" for n in range(12)])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), ids, st.sampled_from(["a", "b"])),
        st.tuples(st.just("repack"), st.sets(ids, max_size=3), st.none()),
        st.tuples(st.just("get"), ids, st.none()),
        st.tuples(st.just("has"), ids, st.none()),
        st.tuples(st.just("tail"), st.none(), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops)
def test_packed_acts_as_plain(ops: list[tuple[str, Any, Any]]) -> None:
    plain, packed = _Plain(), _Packed()
    for n, (op, a, b) in enumerate(ops):
        if op == "add":
            fact = _fact(n, a, b)
            assert plain.add(fact) == packed.add(fact)
        elif op == "repack":
            packed.repack(a)
        elif op == "get":
            assert plain.firsts.get(a) == packed.firsts.get(a)
        elif op == "has":
            assert (a in plain.firsts) == (a in packed.firsts)
            assert ((b, a) in plain.seen) == ((b, a) in packed.seen)
        else:  # what `ScoreState.feed` reads: the facts after those it was fed
            start = max(0, len(plain.facts) - 2)
            assert plain.facts[start:] == packed.facts[start:]
        assert len(plain.facts) == len(packed.facts)
    assert packed.facts == plain.facts and plain.facts == list(packed.facts)
    assert packed.seen == plain.seen and list(packed.seen.items()) == list(plain.seen.items())
    assert packed.firsts == plain.firsts
    assert list(packed.firsts.items()) == list(plain.firsts.items())  # in the same order


def test_the_reads_of_an_as_of_fold_open_nothing() -> None:
    lead = _Packed()
    for n in range(1_000):
        lead.add(_fact(n, f"e{n}", "a"))
    lead.repack({"e3"})
    for n in range(1_000, 1_010):  # the tail after the snapshot
        lead.add(_fact(n, f"e{n}", "a"))
    assert lead.firsts.get("e3") == _fact(3, "e3", "a")  # a trigger: kept plain
    assert "e999" in lead.firsts and "e2000" not in lead.firsts
    assert len(lead.facts) == 1_010 and lead.facts[1_000:][0].event_id == "e1000"
    lead.repack({"e3"})  # a snapshot from a snapshot adds the tail as a part
    assert isinstance(lead.facts, PackedFacts) and isinstance(lead.firsts, PackedFirsts)
    assert not (lead.facts.opened or lead.seen.opened or lead.firsts.opened)
    again = _fact(1_010, "e5", "b")  # a known id, not kept plain: opens, and answers right
    assert lead.add(again) == _fact(5, "e5", "a") and lead.firsts.opened and lead.facts.opened
