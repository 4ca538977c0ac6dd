"""The duplicate index is written in the batch's save transaction (docs/identity.md#duplicates):
a save that fails after the index rows were written leaves none of them (a real failure
injected on PostgreSQL: a trigger refuses the events), the batch redone writes each row once,
and a batch whose hashes another writer indexed between its read and its save is refused
(`IndexMoved`) instead of deciding on a stale group."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import PersistenceError
from psycopg import sql

from engine.domain.contract import Envelope, validate_event
from engine.domain.rules import DuplicateRule, Identity, Rules
from engine.postgres import db as dbmod
from engine.postgres.duplicates import IndexMoved, PostgresDuplicateIndex
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import raw

PHONE = "+1 (202) 555-0147"


def captured(key: str, day: int) -> Envelope:
    data: dict[str, Any] = {"email": f"{key}@x.example", "name": "Ada", "phone": PHONE}
    at = datetime(2026, 3, 1 + day, 9, tzinfo=UTC)
    return validate_event(raw("lead.captured", key, data, at=at, id=f"cap-{key}"))


@pytest.fixture
def merging(settings: Settings, database: dbmod.Database, rules: Rules) -> Iterator[Runtime]:
    merge = rules.model_copy(
        update={
            "identity": Identity(
                duplicates=(DuplicateRule(name="same-phone", match="phone", action="merge"),)
            )
        }
    )
    with open_runtime(settings, rules=merge, database=database) as rt:
        yield rt


def rows(rt: Runtime, table: str) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3").format(sql.Identifier(rt.db.schema, table))
        ).fetchall()


def test_a_save_that_fails_after_the_index_write_leaves_no_index_row(merging: Runtime) -> None:
    rt = merging
    rt.app.ingest([captured("ada", 0)])
    keys_before = rows(rt, "duplicate_keys")
    assert len(keys_before) == 1 and rows(rt, "duplicate_suggestions") == []
    events = sql.Identifier(rt.db.schema, rt.app.process_recorder.events_table_name)
    refuse = sql.Identifier(rt.db.schema, "h20_refuse")
    with rt.db.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN RAISE EXCEPTION 'injected: the events insert fails'; END$$"
            ).format(f=refuse)
        )
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER h20_refuse BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {f}()"
            ).format(t=events, f=refuse)
        )
    with pytest.raises(PersistenceError, match="injected"):
        rt.app.ingest([captured("ada-2", 1)])
    # the index rows were written before the events in the same transaction: none is left
    assert rows(rt, "duplicate_keys") == keys_before
    assert rows(rt, "duplicate_suggestions") == []
    with rt.db.connect() as conn:
        conn.execute(sql.SQL("DROP TRIGGER h20_refuse ON {}").format(events))
    rt.app.ingest([captured("ada-2", 1)])  # the batch redone
    ada, ada2 = rt.app.lead_id("ada"), rt.app.lead_id("ada-2")
    assert sorted(r[2] for r in rows(rt, "duplicate_keys")) == sorted([ada, ada2], key=str)
    (pair,) = rows(rt, "duplicate_suggestions")
    assert (pair[3], pair[4], pair[-1]) == (ada, ada2, "merged")
    assert [link.other_id for link in rt.app.get_lead("ada-2").links] == [ada]


def test_a_hash_indexed_by_another_writer_after_the_read_refuses_the_save(
    merging: Runtime,
) -> None:
    rt = merging
    index = rt.app.duplicates
    assert isinstance(index, PostgresDuplicateIndex)
    seen = datetime(2026, 3, 2, tzinfo=UTC)
    late = index.batch()
    (group,) = late.note_many([("phone", "h1", rt.app.lead_id("b"), seen)])
    assert set(group) == {rt.app.lead_id("b")}  # nothing stored yet: b looks alone
    early = index.batch()
    early.note_many([("phone", "h1", rt.app.lead_id("a"), seen)])
    with index.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
        early.write(cur)  # another writer indexes the same hash and commits first
    with (
        pytest.raises(IndexMoved, match="redone on a fresh read"),
        index.datastore.get_connection() as conn,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        late.write(cur)
    assert [r[2] for r in rows(rt, "duplicate_keys")] == [rt.app.lead_id("a")]
    redone = index.batch()
    (group,) = redone.note_many([("phone", "h1", rt.app.lead_id("b"), seen)])
    assert set(group) == {rt.app.lead_id("a"), rt.app.lead_id("b")}  # the redo sees a


def test_many_batches_each_reading_a_stored_group_are_indexed_in_their_saves(
    merging: Runtime,
) -> None:
    """Batch after batch re-reads a stored group under lock in its save (the save's pipeline):
    every key is indexed once, and the keys end as one person."""
    rt = merging
    keys = [f"k{n}" for n in range(8)]
    for n, key in enumerate(keys):
        rt.app.ingest([captured(key, n)])
    indexed = sorted(r[2] for r in rows(rt, "duplicate_keys"))
    assert indexed == sorted((rt.app.lead_id(k) for k in keys), key=str)
    (members,) = rt.app.identity_map().people().values()
    assert len(members) == len(keys)
