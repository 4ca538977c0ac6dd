"""The projections own every table the projector writes, each exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.projections.projector import PROJECTIONS, TABLES, names


def test_every_written_table_belongs_to_exactly_one_projection() -> None:
    owned = Counter(t for tables in PROJECTIONS.values() for t in tables)
    assert set(owned) == set(TABLES)
    assert set(owned.values()) == {1}


def test_names_are_validated_and_kept_in_registry_order() -> None:
    assert names(None) == tuple(PROJECTIONS)
    assert names("costs, leads") == ("leads", "costs")
    with pytest.raises(ValueError, match="unknown projection 'scores': expected one of leads"):
        names("leads,scores")
