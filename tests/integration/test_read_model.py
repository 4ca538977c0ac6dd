"""The read-model contract on a real PostgreSQL: documented views, a reader role that can read
them and nothing else, and versioned, idempotent migrations."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from engine.domain.errors import LeadEngineError
from engine.postgres import migrations
from engine.readmodel import CONTRACT, read_schema
from engine.runtime import Runtime, open_runtime
from engine.services.application import EVENTS_TABLE
from engine.settings import Settings
from tests.integration.conftest import load_for_readers, reader_login

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def loaded(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    load_for_readers(leadengine, tmp_path, 80, 5, project=False)
    return runtime


@pytest.fixture
def reader(server_url: str, loaded: Runtime) -> Iterator[psycopg.Connection[Any]]:
    """A login role of the reporting job's own, member of leadengine_reader, over TCP/socket."""
    with reader_login(loaded.db, server_url) as conn:
        yield conn


def _doc_columns(text: str, view: str) -> set[str]:
    section = text.split(f"### `{view}`", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    cells = re.findall(r"^\| (`[^|]+`) \|", section, flags=re.M)
    return {c for cell in cells for c in re.findall(r"`([a-z_0-9]+)`", cell)}


def test_every_view_and_column_is_documented(loaded: Runtime) -> None:
    contract = (DOCS / "read-model.md").read_text()
    reports = (DOCS / "reports.md").read_text()
    read = read_schema(loaded.db.schema)
    with loaded.db.connect() as conn:
        for view in CONTRACT:
            cur = conn.execute(
                sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(read, view))
            )
            columns = {d.name for d in cur.description or ()}
            text = reports if view.startswith("kpi_") else contract
            assert columns == _doc_columns(text, view), view


def test_the_reader_reads_the_views_and_nothing_else(loaded: Runtime, reader: Any) -> None:
    read, schema = read_schema(loaded.db.schema), loaded.db.schema
    row = reader.execute(
        sql.SQL("SELECT count(*), count(*) FILTER (WHERE stage = 'customer') FROM {}").format(
            sql.Identifier(read, "lead_current")
        )
    ).fetchone()
    assert row[0] == 80 and row[1] > 0
    for view in CONTRACT:
        reader.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(read, view)))
    refused = [
        sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, EVENTS_TABLE)),
        sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, "lead_state")),
        sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, "lead_keys")),
        sql.SQL("DELETE FROM {}").format(sql.Identifier(read, "lead_current")),
        sql.SQL("UPDATE {} SET stage = 'customer'").format(sql.Identifier(read, "lead_current")),
        sql.SQL("INSERT INTO {} (channel) VALUES ('x')").format(
            sql.Identifier(read, "campaign_costs")
        ),
        sql.SQL("CREATE TABLE {} (x int)").format(sql.Identifier(read, "mine")),
    ]
    for statement in refused:
        with pytest.raises(errors.InsufficientPrivilege):
            reader.execute(statement)


def test_the_documented_example_queries_run_as_the_reader(loaded: Runtime, reader: Any) -> None:
    text = (DOCS / "read-model.md").read_text().split("## Example queries", 1)[1]
    queries = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    assert len(queries) >= 6
    read = read_schema(loaded.db.schema)
    for query in queries:
        rows = reader.execute(query.replace("leadengine_read.", f'"{read}".')).fetchall()
        assert rows, query  # every example answers something on generated data


def test_migrations_are_versioned_idempotent_and_explicit(
    loaded: Runtime, settings: Settings, leadengine: Any
) -> None:
    st = migrations.status(loaded.db)
    assert st.current == migrations.LATEST and not st.pending
    code, out = leadengine("db", "migrate", "--dry-run")
    assert code == 0 and "would apply: nothing" in out
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied nothing (up to date)" in out

    table = sql.Identifier(loaded.db.schema, migrations.TABLE)
    tracking = sql.Identifier(loaded.db.schema, "projection_tracking")
    position = loaded.projector.position()
    assert position > 0
    with loaded.db.connect() as conn:  # as if this schema were made by the previous version:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version >= %s").format(table), (3,))
        for name in ("lead_touchpoints", "lead_milestones"):  # its views had no `source`
            conn.execute(
                sql.SQL("DROP VIEW {}").format(sql.Identifier(read_schema(loaded.db.schema), name))
            )
        for name, key in (("lead_touchpoints", "lead_id"), ("lead_milestones", "lead_id")):
            t = sql.Identifier(loaded.db.schema, name)  # keys without the source (before 4)
            conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN source").format(t))
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({}, event_id)").format(
                t, sql.Identifier(key)))  # fmt: skip
        conn.execute(sql.SQL("DELETE FROM {}").format(tracking))  # one projection, one row
        conn.execute(
            sql.SQL("INSERT INTO {} (name, position) VALUES ('read_model', %s)").format(tracking),
            (position,),
        )
        for column in ("batch_events", "batch_seconds"):
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(tracking, sql.Identifier(column))
            )
    with pytest.raises(LeadEngineError, match=r"at version 2.*db migrate.*3 projections"):
        _start(settings, loaded)
    code, out = leadengine("db", "migrate", "--dry-run")
    assert code == 0 and "would apply: 3 projections" in out
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied 3 projections" in out and "8 event identity" in out
    with loaded.db.connect() as conn:
        versions = [
            r[0] for r in conn.execute(sql.SQL("SELECT version FROM {} ORDER BY 1").format(table))
        ]
        split = dict(
            conn.execute(sql.SQL("SELECT name, position FROM {}").format(tracking)).fetchall()
        )
    assert versions == [m.version for m in migrations.MIGRATIONS]
    # every projection starts where the single read model was: nothing is projected twice
    assert split == {
        "leads": position,
        "touchpoints": position,
        "history": position,
        "costs": position,
    }
    code, out = leadengine("project", "--format", "json")
    assert code == 0 and json.loads(out)["projected"] == 0

    with loaded.db.connect() as conn:  # made before versioned migrations existed
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    with pytest.raises(LeadEngineError, match="unversioned"):
        _start(settings, loaded)
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied 1 read-model tables" in out
    code, out = leadengine("lead", "show", "--format", "json", _a_key(loaded))
    assert code == 0 and json.loads(out)["facts"] > 0  # the data survived every step


def test_a_lower_migration_missing_below_the_highest_is_still_pending(
    loaded: Runtime, leadengine: Any
) -> None:
    """A schema migrated by a build that lacked one migration (merged later with a lower number)
    still gets it: pending means not applied, not merely above the highest version."""
    table = sql.Identifier(loaded.db.schema, migrations.TABLE)
    with loaded.db.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version = 2").format(table))
    st = migrations.status(loaded.db)
    assert st.current == migrations.LATEST
    assert [m.version for m in st.pending] == [2]
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied 2 " in out
    assert not migrations.status(loaded.db).pending


def _start(settings: Settings, runtime: Runtime) -> None:
    with open_runtime(settings, rules=runtime.rules, database=runtime.db):
        pass


def _a_key(runtime: Runtime) -> str:
    with runtime.db.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT lead_key FROM {} LIMIT 1").format(
                sql.Identifier(runtime.db.schema, "lead_state")
            )
        ).fetchone()
    assert row is not None
    return str(row[0])
