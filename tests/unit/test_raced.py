"""A lost race makes contended only the shared aggregate PostgreSQL names (engine/postgres/
contention.py): one conflict on one stream no longer locks every `Kin` of the batch for 30 s."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from engine.aggregates.kin import Kin, kin_id
from engine.aggregates.lead import Lead
from engine.aggregates.routing import RoutingQueue, queue_id
from engine.postgres.contention import conflict_on
from engine.services.application import _new, _raced


class _Diag:
    def __init__(self, detail: str | None) -> None:
        self.message_detail = detail


class _Unique(Exception):
    def __init__(self, detail: str | None) -> None:
        super().__init__("duplicate key value violates unique constraint")
        self.diag = _Diag(detail)


def _conflict(detail: str | None) -> IntegrityError:
    try:
        try:
            raise _Unique(detail)
        except _Unique as cause:
            raise IntegrityError(str(cause)) from cause
    except IntegrityError as exc:
        return exc


def _on(agg_id: UUID, version: int = 3) -> IntegrityError:
    return _conflict(
        f"Key (originator_id, originator_version)=({agg_id}, {version}) already exists."
    )


def _batch() -> dict[UUID, Any]:
    lead_id = uuid4()
    aggs: list[Any] = [
        _new(Lead, lead_id, "lead-1"),
        _new(Kin, kin_id(lead_id), str(lead_id)),
        _new(RoutingQueue, queue_id("emea"), "emea"),
    ]
    return {a.id: a for a in aggs}


def test_the_named_shared_aggregate_alone() -> None:
    touched = _batch()
    assert _raced(_on(queue_id("emea")), touched) == [queue_id("emea")]


def test_a_named_stream_that_is_not_shared_makes_none_contended() -> None:
    touched = _batch()
    lead = next(i for i, a in touched.items() if isinstance(a, Lead))
    assert _raced(_on(lead), touched) == []


def test_an_unnamed_conflict_makes_every_shared_one_contended() -> None:
    touched = _batch()
    shared = [i for i, a in touched.items() if not isinstance(a, Lead)]
    assert _raced(_conflict("provisional account raced"), touched) == shared
    assert _raced(_conflict(None), touched) == shared
    assert _raced(_on(uuid4()), touched) == shared  # named, but not this batch's


def test_conflict_on_reads_the_key() -> None:
    agg = uuid4()
    assert conflict_on(_on(agg, 41)) == agg
    assert conflict_on(IntegrityError("no cause")) is None
