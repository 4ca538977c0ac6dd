"""The read-model declaration (engine/projections/registry.py) is the one source: the
projector's tables, the row functions' tuples, the contract's views and the docs' column tables
all come from it."""

from __future__ import annotations

from pathlib import Path

from engine.domain.lifecycle import RANK, STAGES
from engine.projections import registry, rounds, rows
from engine.projections.kpi_views import RANKS
from engine.projections.kpi_views import VIEWS as KPI_VIEWS
from engine.projections.projector import TABLES, UPSERTED
from engine.readmodel import CONTRACT

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_docs_column_tables_are_what_the_registry_declares() -> None:
    for name in ("read-model.md", "reports.md"):
        text = (DOCS / name).read_text()
        section = text.split(registry.BEGIN, 1)[1].split(registry.END, 1)[0]
        assert registry.BEGIN + section + registry.END == registry.markdown(name), (
            "run: python -m engine.projections.registry docs/read-model.md docs/reports.md"
        )


def test_projector_tables_come_from_the_registry() -> None:
    assert list(TABLES) == list(registry.PROJECTED)
    for name, (columns, key) in TABLES.items():
        table = registry.TABLES[name]
        assert columns == table.names and key == table.key
        assert set(key) <= set(columns)
        assert all(not table.column(k).null for k in key), f"{name}: a key column is nullable"
    assert {"lead_state", "lead_scores", "lead_sla", "lead_sla_rounds"} == UPSERTED
    assert registry.TABLES["lead_sla_rounds"].names == rounds.COLUMNS
    assert registry.TABLES["lead_touchpoints"].names == rows.TOUCH_COLUMNS


def test_stage_columns_and_funnel_ranks_come_from_the_lifecycle() -> None:
    assert STAGES[1:] == registry.STAGE_COLUMNS
    for stage, rank in RANK.items():
        assert (f"('{stage}', {rank})" in RANKS) == (rank > 0)
    assert RANKS.endswith("AS r(stage, rank)")


def test_every_contract_view_is_declared_with_a_meaning_for_each_column() -> None:
    assert set(CONTRACT) == set(registry.VIEWS)
    assert set(KPI_VIEWS) <= set(registry.VIEWS)
    for view in registry.VIEWS.values():
        assert view.meaning
        names = [o.name for o in view.columns]
        assert len(names) == len(set(names)), view.name
        for o in view.columns:
            assert view.meaning_of(o) and view.type_of(o), f"{view.name}.{o.name}"


def test_the_ddl_declares_every_column_and_key() -> None:
    statements = registry.TABLES["lead_touchpoints"].ddl()
    create = statements[0]
    assert create.startswith("CREATE TABLE IF NOT EXISTS {s}.lead_touchpoints (")
    assert "source text NOT NULL DEFAULT ''" in create
    assert "PRIMARY KEY (lead_id, source, event_id)" in create
    assert any("ADD COLUMN IF NOT EXISTS rep text" in s for s in statements)
    assert statements[-1] == (
        "CREATE INDEX IF NOT EXISTS lead_touchpoints_time_idx ON {s}.lead_touchpoints (occurred_at)"
    )


def test_comments_read_as_plain_text() -> None:
    assert registry.plain("see [allowed values](#allowed-values) and `x`") == (
        "see allowed values and `x`"
    )


def test_every_view_says_whether_its_rows_are_current_or_historical() -> None:
    assert set(registry.ROWS) == set(registry.VIEWS)
    for name, view in registry.VIEWS.items():
        assert view.meaning.endswith(registry.ROW_KINDS[registry.ROWS[name]]), name
    assert registry.ROWS["lead_current"] == "current"
    assert registry.ROWS["lead_stage_history"] == "history"


def test_every_moment_of_the_contract_names_its_clock() -> None:
    for view in registry.VIEWS.values():
        for o in view.columns:
            if view.type_of(o).startswith("timestamptz"):
                assert "clock" in view.meaning_of(o), f"{view.name}.{o.name}"
    assert registry.VIEWS["lead_touchpoints"].meaning_of(
        registry.VIEWS["lead_touchpoints"].out("occurred_at")
    ).endswith("(happened clock)")
    credits = registry.VIEWS["attribution_credits"]
    assert credits.meaning_of(credits.out("as_of")).endswith("(recorded clock)")
