from __future__ import annotations

import itertools
from collections import Counter

from engine.contract import EVENT_TYPES, validate_event
from engine.generator import generate


def test_deterministic_for_a_seed() -> None:
    assert generate(40, seed=5) == generate(40, seed=5)
    assert generate(40, seed=5) != generate(40, seed=6)


def test_every_event_is_valid_and_the_catalogue_is_covered() -> None:
    events = generate(400, seed=1)
    types = Counter(validate_event(e).type for e in events)
    missing = set(EVENT_TYPES) - set(types)
    assert not missing, f"generator never produces {missing}"


def test_duplicates_and_out_of_order_deliveries_exist() -> None:
    events = generate(200, seed=2)
    ids = Counter(e["id"] for e in events)
    assert any(n > 1 for n in ids.values())
    times = [e["time"] for e in events]
    assert any(a > b for a, b in itertools.pairwise(times))
