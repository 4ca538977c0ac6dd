"""A reporting team's views, in a schema of their own, over every view of the read contract:
no rebuild, migration or upgrade of the engine drops them, and they answer with the rows of
the tables in force; what the engine cannot carry over, it refuses by name, changing nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine import readmodel
from engine.domain.generator import generate
from engine.postgres import migrations
from engine.postgres.dependents import DependentObjects
from engine.projections.kpi_views import FINGERPRINT as KPI_FINGERPRINT
from engine.projections.projector import PROJECTIONS
from engine.readmodel import CONTRACT, read_schema
from engine.runtime import Runtime


def _ingest(leadengine: Any, path: Path, leads: int, seed: int) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(leads, seed=seed)))
    code, _ = leadengine("ingest", str(path))
    assert code == 0, leadengine.stderr[-1]


@pytest.fixture
def team(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Iterator[str]:
    """A projected log and a schema `revops_*` with a view over every contract view, one view
    over one of those, and one (an administrator's) over an engine table directly."""
    _ingest(leadengine, tmp_path / "a.jsonl", 60, seed=7)
    code, _ = leadengine("project")
    assert code == 0
    schema = f"revops_{uuid.uuid4().hex[:8]}"
    read, s = sql.Identifier(read_schema(runtime.db.schema)), sql.Identifier(schema)
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
        for name in CONTRACT:
            conn.execute(
                sql.SQL("CREATE VIEW {}.{} AS SELECT * FROM {}.{}").format(
                    s, sql.Identifier(f"stg_{name}"), read, sql.Identifier(name)
                )
            )
        conn.execute(
            sql.SQL(
                "CREATE VIEW {s}.mqls AS SELECT count(*) AS mqls FROM {s}.stg_lead_current "
                "WHERE mql_at IS NOT NULL"
            ).format(s=s)
        )
        conn.execute(
            sql.SQL("CREATE VIEW {}.raw_stages AS SELECT lead_id, stage FROM {}.lead_state").format(
                s, sql.Identifier(runtime.db.schema)
            )
        )
    try:
        yield schema
    finally:
        with runtime.db.connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(s))


def _rows(conn: Any, schema: str, name: str) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple(map(str, row)) for row in conn.execute(
            sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name))
        ).fetchall()),
    )  # fmt: skip


def _agree(runtime: Runtime, team: str) -> dict[str, int]:
    """Every team view answers exactly what the contract view under it answers; row counts."""
    read = read_schema(runtime.db.schema)
    counts = {}
    # one transaction: views that say when they were read (`lead_sla_rounds.state_at`, now())
    # answer for the same moment on both sides
    with runtime.db.connect() as conn, conn.transaction():
        for name in CONTRACT:
            mine = _rows(conn, team, f"stg_{name}")
            assert mine == _rows(conn, read, name), name
            counts[name] = len(mine)
        (mqls,) = conn.execute(
            sql.SQL("SELECT mqls FROM {}.mqls").format(sql.Identifier(team))
        ).fetchone()
        expected = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.lead_current WHERE mql_at IS NOT NULL").format(
                sql.Identifier(read)
            )
        ).fetchone()
        assert (mqls,) == expected
        raw = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.raw_stages").format(sql.Identifier(team))
        ).fetchone()
        assert raw == (counts["lead_current"],)
    return counts


def test_team_views_survive_every_rebuild_and_migrate(
    runtime: Runtime, team: str, leadengine: Any, tmp_path: Path
) -> None:
    before = _agree(runtime, team)
    assert before["lead_current"] > 0 and before["lead_touchpoints"] > 0
    # more leads arrive and are not projected: each rebuild must bring them into the team's views
    _ingest(leadengine, tmp_path / "b.jsonl", 75, seed=7)  # the same 60 (ignored) and 15 more
    for name in PROJECTIONS:
        code, out = leadengine("projections", "rebuild", name, "--format", "json")
        assert code == 0, leadengine.stderr[-1]
        assert json.loads(out)["projection"] == name
        _agree(runtime, team)
    after = _agree(runtime, team)
    assert after["lead_current"] == before["lead_current"] + 15
    assert after["lead_touchpoints"] > before["lead_touchpoints"]

    code, out = leadengine("db", "migrate")
    assert code == 0, leadengine.stderr[-1]
    assert _agree(runtime, team) == after

    # every migration applied again (each is idempotent), the team's views in place
    table = sql.Identifier(runtime.db.schema, migrations.TABLE)
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version <> 4").format(table))
    code, out = leadengine("db", "migrate")
    assert code == 0, leadengine.stderr[-1]
    assert "applied 1 read-model tables" in out
    assert _agree(runtime, team) == after


def test_a_migration_that_must_retype_columns_names_the_views_in_its_way(
    runtime: Runtime, team: str, leadengine: Any
) -> None:
    """Migration 4 retypes money columns, which PostgreSQL refuses under any view: it stops,
    names the team's views, and changes nothing."""
    table = sql.Identifier(runtime.db.schema, migrations.TABLE)
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version = 4").format(table))
    code, _ = leadengine("db", "migrate")
    assert code != 0
    message = leadengine.stderr[-1]
    assert "migration 4 must retype money columns" in message
    assert f"{team}.stg_lead_current" in message and "docs/read-model.md" in message
    assert [m.version for m in migrations.status(runtime.db).pending] == [4]
    _agree(runtime, team)


def test_changed_definitions_are_replaced_in_place(
    runtime: Runtime, team: str, leadengine: Any
) -> None:
    """An upgrade whose views differ (fingerprints no longer match) replaces them in place."""
    with runtime.db.connect() as conn:
        for view in (
            f"{runtime.db.schema}.kpi_funnel",
            f"{read_schema(runtime.db.schema)}.lead_current",
        ):
            conn.execute(
                sql.SQL("COMMENT ON VIEW {} IS 'an older leadengine'").format(sql.SQL(view))
            )
    code, _ = leadengine("db", "migrate")
    assert code == 0, leadengine.stderr[-1]
    _agree(runtime, team)
    with runtime.db.connect() as conn:
        comments = conn.execute(
            "SELECT obj_description(%s::regclass), obj_description(%s::regclass)",
            (f"{runtime.db.schema}.kpi_funnel", f"{read_schema(runtime.db.schema)}.lead_current"),
        ).fetchone()
    assert comments == (KPI_FINGERPRINT, readmodel.FINGERPRINT)


def test_an_incompatible_change_is_refused_while_a_team_view_needs_it(
    runtime: Runtime, team: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A view that must lose a column is not dropped under a team's view: the error names the
    team's views; without them, the change is made."""
    narrower = CONTRACT["lead_scores"].replace("c.model_version, ", "")
    assert narrower != CONTRACT["lead_scores"]
    monkeypatch.setitem(CONTRACT, "lead_scores", narrower)
    monkeypatch.setattr(readmodel, "FINGERPRINT", "leadengine read contract (narrower)")
    with (
        runtime.db.connect() as conn,
        pytest.raises(DependentObjects) as refused,
        conn.transaction(),
    ):
        readmodel.ensure_contract(conn, runtime.db.schema)
    assert f"{team}.stg_lead_scores" in str(refused.value)
    assert "docs/read-model.md" in str(refused.value)
    _agree(runtime, team)  # nothing changed

    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("DROP VIEW {}.stg_lead_scores").format(sql.Identifier(team)))
        with conn.transaction():
            assert readmodel.ensure_contract(conn, runtime.db.schema)
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'lead_scores'",
            (read_schema(runtime.db.schema),),
        ).fetchall()
    assert ("model_version",) not in columns and ("model",) in columns


def test_a_rebuild_refuses_what_it_cannot_carry_over_before_it_starts(
    runtime: Runtime, team: str, leadengine: Any
) -> None:
    """A materialized view over a live table would lose its table: the rebuild names it and
    leaves everything as it was."""
    with runtime.db.connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE MATERIALIZED VIEW {}.snapshot AS SELECT lead_id FROM {}.lead_scores"
            ).format(sql.Identifier(team), sql.Identifier(runtime.db.schema))
        )
    code, _ = leadengine("projections", "rebuild", "leads")
    assert code != 0
    assert f"{team}.snapshot" in leadengine.stderr[-1]
    with runtime.db.connect() as conn:
        staging = conn.execute(
            "SELECT to_regnamespace(%s)", (f"{runtime.db.schema}_rebuild",)
        ).fetchone()
    assert staging == (None,)
    _agree(runtime, team)
