"""A failure that reaches the client while a later statement of the pipeline is sent (the
server answered early, as under load), not at `sync()`, survives the end of the transaction:
the chained recorder settles the pipeline first (engine/postgres/chain.py `_settle`), so a
version conflict stays an IntegrityError (redone on a fresh read) instead of turning into a
PipelineAborted that is retried to the end. Real PostgreSQL; the early answer is forced by
flushing and waiting before the next statements are sent."""

from __future__ import annotations

import time

import pytest
from psycopg import errors

from engine.postgres import chain
from engine.postgres.db import Database


def _conflict_seen_early(database: Database, settle: bool) -> BaseException:
    kept: BaseException | None = None
    with database.connect() as conn:
        conn.execute("CREATE TEMP TABLE once (k int PRIMARY KEY)")
        conn.execute("INSERT INTO once VALUES (1)")
        try:
            with (
                conn.pipeline() as pipeline,
                conn.transaction(),
                conn.cursor() as first,
                conn.cursor() as later,
            ):
                try:
                    first.execute("INSERT INTO once VALUES (1)")
                    conn.pgconn.flush()
                    time.sleep(0.3)  # the violation is on its way back
                    for _ in range(50):
                        later.execute("SELECT 1")
                    pipeline.sync()
                except Exception as e:
                    kept = e
                    if settle:
                        chain._settle(pipeline)
        except Exception as over:
            return over
    assert kept is not None
    return kept


def test_an_early_conflict_survives_the_transactions_end(database: Database) -> None:
    assert isinstance(_conflict_seen_early(database, settle=True), errors.UniqueViolation)


def test_without_settling_the_pipeline_hides_it(database: Database) -> None:
    """The failure mode itself (psycopg's behaviour), so the test above proves something."""
    over = _conflict_seen_early(database, settle=False)
    if isinstance(over, errors.UniqueViolation):
        pytest.fail("the violation arrived at sync(): the early answer was not forced")
    assert isinstance(over, errors.PipelineAborted)
