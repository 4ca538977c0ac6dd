"""The documented values hold on real data: dbt-style `unique`, `not_null`, `accepted_values`
and format checks, parsed from docs/read-model.md (not from the code), run on a dataset made
by the demo generator through the CLI, as the reader role sees it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine import readvalues
from engine.readmodel import CONTRACT, read_schema
from engine.runtime import Runtime

DOC = Path(__file__).resolve().parents[2] / "docs" / "read-model.md"


def _table(title: str) -> list[list[str]]:
    """The rows of the markdown table under `### title`, cells stripped."""
    section = DOC.read_text().split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[1:]]  # no header


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _split(column: str) -> tuple[str, str]:
    view, name = column.split(".")
    return view, name


@pytest.fixture(scope="module")
def documented() -> dict[str, Any]:
    keys = {_codes(view)[0]: (_codes(key), _codes(required)) for view, key, required in
            _table("Keys and required columns")}  # fmt: skip
    accepted = {_codes(column)[0]: _codes(values) for column, _, values in
                _table("Allowed values")}  # fmt: skip
    patterns = {_codes(column)[0]: _codes(pattern)[0] for column, pattern, _ in
                _table("Formats")}  # fmt: skip
    return {"keys": keys, "accepted": accepted, "patterns": patterns}


@pytest.fixture
def dataset(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "events.jsonl"
    assert leadengine("generate", "--leads", "300", "--seed", "16", "-o", str(path))[0] == 0
    assert leadengine("ingest", str(path))[0] == 0
    assert leadengine("project")[0] == 0
    for value in ("conversions", "revenue"):
        code, _ = leadengine("report", "attribution", "--value", value, "--save")
        assert code == 0, leadengine.stderr[-1]
    yield runtime


def test_the_doc_section_is_what_the_code_declares() -> None:
    text = DOC.read_text()
    section = text.split(readvalues.BEGIN, 1)[1].split(readvalues.END, 1)[0]
    assert readvalues.BEGIN + section + readvalues.END == readvalues.markdown(), (
        "run: python -m engine.readvalues docs/read-model.md"
    )


def test_documented_checks_pass_on_generated_data(
    dataset: Runtime, documented: dict[str, Any]
) -> None:
    read = sql.Identifier(read_schema(dataset.db.schema))
    assert set(documented["keys"]) <= set(CONTRACT)
    checked = 0
    with dataset.db.connect() as conn:

        def scalar(query: sql.Composable) -> Any:
            row = conn.execute(query).fetchone()
            assert row is not None
            return row[0]

        for view, (key, required) in documented["keys"].items():
            v = sql.Identifier(view)
            assert scalar(sql.SQL("SELECT count(*) FROM {}.{}").format(read, v)) > 0, view
            for column in required:  # not_null
                nulls = scalar(
                    sql.SQL("SELECT count(*) FROM {}.{} WHERE {} IS NULL").format(
                        read, v, sql.Identifier(column)
                    )
                )
                assert nulls == 0, f"{view}.{column}: {nulls} nulls"
                checked += 1
            if key:  # unique
                cols = sql.SQL(", ").join(map(sql.Identifier, key))
                dupes = scalar(
                    sql.SQL(
                        "SELECT count(*) FROM (SELECT {c} FROM {r}.{v} GROUP BY {c} "
                        "HAVING count(*) > 1) d"
                    ).format(c=cols, r=read, v=v)
                )
                assert dupes == 0, f"{view} {key}: {dupes} duplicate keys"
                checked += 1
        for column, values in documented["accepted"].items():  # accepted_values
            view, name = _split(column)
            found = {
                row[0]
                for row in conn.execute(
                    sql.SQL("SELECT DISTINCT {}::text FROM {}.{} WHERE {} IS NOT NULL").format(
                        sql.Identifier(name), read, sql.Identifier(view), sql.Identifier(name)
                    )
                ).fetchall()
            }
            assert found, column  # the check is not vacuous
            assert found <= set(values), f"{column}: undocumented {sorted(found - set(values))}"
            checked += 1
        for column, pattern in documented["patterns"].items():
            view, name = _split(column)
            c = sql.Identifier(name)
            matched, bad = conn.execute(
                sql.SQL(
                    "SELECT count(*) FILTER (WHERE {c} ~ %(p)s), "
                    "array_agg(DISTINCT {c}) FILTER (WHERE {c} !~ %(p)s) FROM {r}.{v}"
                ).format(c=c, r=read, v=sql.Identifier(view)),
                {"p": pattern},
            ).fetchone()  # type: ignore[misc]
            assert matched > 0 and not bad, (column, pattern, bad)
            checked += 1
    assert checked > 60


def test_the_documented_lists_name_what_the_data_holds(
    dataset: Runtime, documented: dict[str, Any]
) -> None:
    """The reports' complaints: `anonymous` is documented, `sales` and `direct` are listed,
    the touch types are complete, `model_version` is stored as documented."""
    accepted = documented["accepted"]
    assert "anonymous" in accepted["lead_current.stage"]
    assert "anonymous" in accepted["lead_stage_history.from_stage"]
    assert {"sales", "direct"} <= set(accepted["lead_touchpoints.channel"])
    views = DOC.read_text().split("\n## Views", 1)[1].split("\n## Tests a reporting job", 1)[0]
    assert not re.findall(r"^\|.*\.\.\..*\|$", views, flags=re.M)  # no list ends in "..."
    read = sql.Identifier(read_schema(dataset.db.schema))
    with dataset.db.connect() as conn:
        types = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT DISTINCT type FROM {}.lead_touchpoints").format(read)
            ).fetchall()
        }
        versions = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT DISTINCT model_version FROM {}.lead_scores").format(read)
            ).fetchall()
        }
    assert len(types) >= 12 and types <= set(accepted["lead_touchpoints.type"])
    assert all("@" not in v for v in versions), versions
