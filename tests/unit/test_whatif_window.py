"""`whatif --since T` counts honestly: every fact is read (each lead's state is rebuilt from its
first fact), but only the facts from T on are replayed under the new rules, and the summary
says both: `facts` / `leads` read, `facts_in_window` / `leads_in_window` decided anew."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.rules import load_rules
from engine.domain.whatif import replay
from tests.unit.test_whatif_parallel import LOOSER, _facts

RULES = load_rules()
FACTS = _facts(30)
FIRST = min(f.occurred_at for f in FACTS)
LAST = max(f.occurred_at for f in FACTS)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=-2, max_value=int((LAST - FIRST).total_seconds() // 3600) + 2))
def test_the_window_counts_are_the_facts_from_since_on(hours: int) -> None:
    since = FIRST + timedelta(hours=hours)
    doc = replay(FACTS, RULES, LOOSER, since=since).summary()
    inside = [f for f in FACTS if f.occurred_at >= since]
    assert doc["facts"] == len(FACTS)
    assert doc["leads"] == len({f.lead_key for f in FACTS})
    assert doc["facts_in_window"] == len(inside)
    assert doc["leads_in_window"] == len({f.lead_key for f in inside})


def test_a_window_after_the_last_fact_replays_nothing_and_changes_nothing() -> None:
    doc = replay(FACTS, RULES, LOOSER, since=LAST + timedelta(days=1)).summary()
    assert (doc["facts_in_window"], doc["leads_in_window"], doc["leads_changed"]) == (0, 0, 0)
    assert doc["facts"] == len(FACTS) > 0


def test_no_since_replays_every_fact() -> None:
    doc = replay(FACTS, RULES, LOOSER).summary()
    assert (doc["facts_in_window"], doc["leads_in_window"]) == (doc["facts"], doc["leads"])
