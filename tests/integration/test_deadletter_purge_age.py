"""`deadletters purge --before T` deletes what was received strictly before T: a row received
at T itself stays (found by bench/db_mutants.py: `<=` for `<` passed every purge test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import sql

from engine.domain.errors import InvalidEvent
from engine.postgres.deadletters import DeadLetter
from engine.runtime import Runtime

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_purge_before_t_keeps_a_row_received_at_t(runtime: Runtime) -> None:
    store = runtime.deadletters
    store.add([DeadLetter(f"file:in.jsonl:{n}", b"{}", InvalidEvent("bad")) for n in (1, 2)])
    rows = {d["origin"]: d["id"] for d in store.latest()}
    at = {rows["file:in.jsonl:1"]: T - timedelta(microseconds=1), rows["file:in.jsonl:2"]: T}
    with runtime.db.connect() as conn:
        for row_id, moment in at.items():
            conn.execute(
                sql.SQL("UPDATE {} SET received_at = %s WHERE id = %s").format(
                    sql.Identifier(runtime.db.schema, "dead_letters")
                ),
                (moment, row_id),
            )
    assert store.matching(before=T) == [rows["file:in.jsonl:1"]]
    assert store.delete(before=T) == 1
    assert [d["id"] for d in store.latest()] == [rows["file:in.jsonl:2"]]
