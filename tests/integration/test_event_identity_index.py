"""The event identity index on PostgreSQL (engine/postgres/identities.py): a (source, id) recorded
on one lead and sent again on another is refused or counted as a duplicate, a race on the pair
is a version race, and migration 27 fills the index from the stored facts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg import sql

from engine.consumers.retry import RaceStats, store_racing
from engine.domain.contract import Envelope, validate_event
from engine.domain.rules import Rules
from engine.postgres import db as dbmod
from engine.postgres.identities import TABLE
from engine.postgres.migrations import TABLE as MIGRATIONS_TABLE
from engine.postgres.migrations import migrate
from engine.runtime import Runtime, open_runtime
from engine.services.application import EVENTS_TABLE
from engine.settings import Settings
from tests.factory import raw


def deal(subject: str, amount: str = "1000.00", *, id: str = "deal-7") -> dict[str, Any]:
    data = {"amount": amount, "currency": "USD"}
    return {**raw("deal.won", subject, data, id=id), "source": "crm"}


def envelopes(*events: dict[str, Any]) -> list[Envelope]:
    return [validate_event(e) for e in events]


def write(path: Path, events: Iterable[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def index(runtime: Runtime) -> dict[tuple[str, str], UUID]:
    with runtime.db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT source, event_id, lead_id FROM {}").format(
                sql.Identifier(runtime.db.schema, TABLE)
            )
        ).fetchall()
    return {(s, e): UUID(str(i)) for s, e, i in rows}


def stored_deals(runtime: Runtime) -> int:
    with runtime.db.connect() as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE topic LIKE %s "
                "AND convert_from(state, 'UTF8')::jsonb ->> 'event_id' = 'deal-7'"
            ).format(sql.Identifier(runtime.db.schema, EVENTS_TABLE)),
            ("%FactRecorded",),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_pair_again_on_another_lead_is_a_kept_conflict_naming_the_lead_by_id(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    code, out = leadengine("ingest", write(tmp_path / "a.jsonl", [deal("lead-7")]))
    assert code == 0 and "accepted" in out
    code, out = leadengine("ingest", write(tmp_path / "b.jsonl", [deal("lead-8", "99.00")]))
    assert code in (0, 1)
    assert ("lead-8" not in out) and ("conflicts" in out)
    (kept,) = runtime.deadletters.latest(10)
    assert kept["event_id"] == "deal-7" and kept["field"] == "data.amount"
    assert f"lead {runtime.app.lead_id('lead-7')}" in kept["error"]
    assert "lead-7" not in kept["error"] and "lead-8" not in kept["error"]
    assert stored_deals(runtime) == 1
    # the same content under another key: a duplicate, stored nowhere
    result = runtime.app.ingest(envelopes(deal("lead-9")))
    assert (result.accepted, result.duplicates, result.conflicts) == (0, 1, 0)
    assert stored_deals(runtime) == 1
    assert index(runtime) == {("crm", "deal-7"): runtime.app.lead_id("lead-7")}


def test_a_race_on_the_pair_is_a_version_race_and_the_redone_batch_sees_it(
    runtime: Runtime, settings: Settings, database: dbmod.Database, rules: Rules
) -> None:
    with open_runtime(settings, rules=rules, database=database) as other:
        real = runtime.app.identities.owners
        raced: list[bool] = []

        def owners_then_the_other_writer_stores(pairs: Any) -> Any:
            found = real(pairs)  # read before the other writer commits the same pair
            if not raced:
                raced.append(True)
                assert other.app.ingest(envelopes(deal("lead-7"))).accepted == 1
            return found

        runtime.app.identities.owners = owners_then_the_other_writer_stores  # type: ignore[method-assign]
        batch = envelopes(deal("lead-8", "5.00"))
        stats = RaceStats()
        # the first attempt's save fails on the pair's key (IntegrityError, as a version race)
        result = store_racing(lambda: runtime.app.ingest(batch), stats=stats, what="test batch")
        assert stats.races == 1  # lost once more to the other writer, then redone fresh
        assert result is not None and (result.accepted, result.conflicts) == (0, 1)
        assert stored_deals(runtime) == 1
        assert index(runtime) == {("crm", "deal-7"): runtime.app.lead_id("lead-7")}


def test_migration_27_fills_the_index_from_the_log_the_first_lead_keeping_a_pair(
    runtime: Runtime, database: dbmod.Database
) -> None:
    app = runtime.app
    app.ingest(envelopes(deal("lead-7"), deal("lead-8", id="deal-8")))
    # what a writer before the index could store: the same pair on a second lead
    t = sql.Identifier(database.schema, TABLE)
    with database.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(t))
    assert app.ingest(envelopes(deal("lead-9", "3.00"))).accepted == 1
    assert stored_deals(runtime) == 2
    # the schema as it was before migration 27
    with database.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(t))
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 27").format(
                sql.Identifier(database.schema, MIGRATIONS_TABLE)
            )
        )
    assert [m.version for m in migrate(database)] == [27]
    assert index(runtime) == {
        ("crm", "deal-7"): app.lead_id("lead-7"),
        ("crm", "deal-8"): app.lead_id("lead-8"),
    }
    app.clear_cache()
    again = app.ingest(envelopes(deal("lead-10", "4.00"), deal("lead-11", id="deal-8")))
    assert [o.value for _, o in again.outcomes] == ["conflict", "duplicate"]
    assert f"lead {app.lead_id('lead-7')}" in again.rejected[0][1].describe()
