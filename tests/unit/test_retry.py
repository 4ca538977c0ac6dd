"""Redoing batches that lost a version conflict: counted, bounded by the caller's `settled`."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError

from engine.consumers.retry import RaceStats, store_racing


def losing(times: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise IntegrityError("duplicate key value violates unique constraint")
        return "stored"

    return calls, attempt


def test_a_lost_race_is_redone_and_measured() -> None:
    stats = RaceStats()
    calls, attempt = losing(2)
    assert store_racing(attempt, stats=stats, what="batch") == "stored"  # type: ignore[arg-type]
    assert len(calls) == 3
    calls, attempt = losing(1)
    store_racing(attempt, stats=stats, what="batch")  # type: ignore[arg-type]
    assert (stats.races, stats.max_races_in_a_row) == (3, 2)
    assert stats.as_dict()["max_stall_s"] >= 0


def test_work_another_writer_stored_is_not_redone() -> None:
    stats = RaceStats()
    calls, attempt = losing(5)
    result = store_racing(attempt, stats=stats, what="batch", settled=lambda: True)  # type: ignore[arg-type]
    assert result is None and len(calls) == 1 and stats.races == 1


def test_other_errors_are_not_retried() -> None:
    def attempt() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        store_racing(attempt, stats=RaceStats(), what="batch")


def test_a_conflict_that_never_clears_is_raised_not_retried_for_ever() -> None:
    calls, attempt = losing(1000)
    with pytest.raises(IntegrityError):
        store_racing(attempt, stats=RaceStats(), what="batch", max_in_a_row=3)  # type: ignore[arg-type]
    assert len(calls) == 4
