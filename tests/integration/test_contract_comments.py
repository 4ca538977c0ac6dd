"""The contract's meanings are in PostgreSQL, where dbt's catalog and `\\d+` read them: every
contract view and column has a COMMENT, read back here from pg_description as a reporting
login sees it, and equal to what docs/read-model.md and docs/reports.md say (both generated
from engine/projections/registry.py). The engine's tables carry their declared comments, also
after a rebuild swapped them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.projections.registry import TABLES, VIEWS, plain
from engine.readmodel import read_schema
from engine.runtime import Runtime
from tests.integration.conftest import load_for_readers, reader_login

DOCS = Path(__file__).resolve().parents[2] / "docs"

COMMENTS = """
SELECT a.attname, col_description(a.attrelid, a.attnum)
FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum"""


def _documented(view: str) -> tuple[str, dict[str, str]]:
    """The view's first line under its heading and its columns' meanings, as the docs say."""
    doc = DOCS / VIEWS[view].doc
    section = doc.read_text().split(f"### `{view}`\n", 1)[1].split("\n#", 1)[0]
    grain = section.split("\n", 1)[0]
    cells = re.findall(r"^\| `([a-z_0-9]+)` \| [^|]+ \| (.*) \|$", section, flags=re.M)
    return plain(grain), {name: plain(meaning) for name, meaning in cells}


@pytest.fixture
def projected(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    load_for_readers(leadengine, tmp_path, 40, 3)
    return runtime


def test_every_contract_column_carries_its_documented_meaning(
    projected: Runtime, server_url: str
) -> None:
    read = read_schema(projected.db.schema)
    checked = 0
    with reader_login(projected.db, server_url) as reader:
        for view in VIEWS:
            grain, meanings = _documented(view)
            assert meanings, f"{view}: no column table in the docs"
            row = reader.execute(
                "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{read}.{view}",)
            ).fetchone()
            assert row is not None and row[0], f"{view}: no comment"
            assert row[0] == grain or row[0].startswith(grain + " [leadengine read contract "), (
                view
            )
            found = dict(reader.execute(COMMENTS, (f"{read}.{view}",)).fetchall())
            assert set(found) == set(meanings), view
            for column, comment in found.items():
                assert comment == meanings[column], f"{view}.{column}: {comment!r}"
                checked += 1
    assert checked > 150  # every column of every view, not a sample


def _table_comments(runtime: Runtime, table: str) -> tuple[str, dict[str, str]]:
    with runtime.db.connect() as conn:
        row = conn.execute(
            "SELECT obj_description(to_regclass(%s), 'pg_class')",
            (f"{runtime.db.schema}.{table}",),
        ).fetchone()
        found = dict(conn.execute(COMMENTS, (f"{runtime.db.schema}.{table}",)).fetchall())
    return (row[0] if row else ""), found


def test_the_tables_carry_their_declared_comments_also_after_a_rebuild(
    projected: Runtime, leadengine: Any
) -> None:
    for table in TABLES.values():
        comment, columns = _table_comments(projected, table.name)
        assert comment == plain(table.meaning), table.name
        assert columns == {c.name: plain(c.meaning) for c in table.columns}, table.name
    before = _table_comments(projected, "lead_state")
    code, _ = leadengine("projections", "rebuild", "leads")
    assert code == 0, leadengine.stderr[-1]
    assert _table_comments(projected, "lead_state") == before
