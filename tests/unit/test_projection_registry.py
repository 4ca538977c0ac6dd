"""The projections own every table the projector writes, each exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.projections.projector import PROJECTIONS, TABLES, names
from engine.projections.registry import ACCOUNT_TABLES


def test_every_written_table_belongs_to_exactly_one_projection() -> None:
    owned = Counter(t for tables in PROJECTIONS.values() for t in tables)
    # the account tables are the leads projection's, written by engine/projections/accounts.py
    assert set(owned) == set(TABLES) | set(ACCOUNT_TABLES)
    assert set(owned.values()) == {1}


def test_names_are_validated_and_kept_in_registry_order() -> None:
    assert names(None) == tuple(PROJECTIONS)
    assert names("costs, leads") == ("leads", "costs")
    with pytest.raises(ValueError, match="unknown projection 'scores': expected one of leads"):
        names("leads,scores")
