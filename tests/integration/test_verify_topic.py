"""The event's topic (its type) is part of what `verify` proves: a stored event moved to another
type, its bytes untouched, breaks the chain at that version (found by bench/db_mutants.py: a
digest without the topic passed every tamper case, none of which changed a topic)."""

from __future__ import annotations

from uuid import UUID

from engine.postgres.verify import verify
from engine.runtime import Runtime
from tests.integration.test_verify_checks import PROBLEMS, _sql, _version, lead  # noqa: F401


def test_an_event_given_another_type_breaks_the_digest(
    lead: tuple[Runtime, UUID],  # noqa: F811
) -> None:
    runtime, agg = lead
    topics = [_version(runtime, agg, v)[0] for v in (1, 2, 3)]
    other = next(t for t in topics if t != topics[2])  # a type this stream holds elsewhere
    _sql(runtime, "UPDATE leadengine_events SET topic = %s "
         "WHERE originator_id = %s AND originator_version = 3", other, agg)  # fmt: skip
    report = verify(runtime.db)
    assert [(b.aggregate, b.version) for b in report.breaks] == [(agg, 3)]
    assert PROBLEMS["digest"] in report.breaks[0].problem
