"""The documented values hold on real data: dbt-style `unique`, `not_null`, `accepted_values`
and format checks, parsed from docs/read-model.md (not from the code), run on a dataset made
by the demo generator through the CLI, as the reader role sees it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine import readmodel, readvalues
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.projections.projector import PROJECTIONS
from engine.readmodel import CONTRACT, read_schema
from engine.runtime import Runtime
from tests.datasets import per_test_copies
from tests.inprocess import run_in_process
from tests.integration.conftest import reader_login

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


def _generate(env: dict[str, str], path: Path) -> None:
    """The data every test here reads, through the CLI as a user makes it."""
    made = run_in_process(  # identity stories too: every contract view has rows to check
        env, "generate", "--leads", "300", "--seed", "16", "--identity", "0.2", "-o", str(path)
    )
    assert made.returncode == 0
    run_in_process(env, "ingest", str(path))
    run_in_process(env, "project")
    for value in ("conversions", "revenue"):
        run_in_process(env, "report", "attribution", "--value", value, "--save")
    run_in_process(env, "projections", "refresh-attribution")  # attribution_by_window


# built once for the module (its tests read it); each test gets a copy of its own
generated, server_url, database = per_test_copies(
    lambda env, work: _generate(env, work / "events.jsonl")
)


@pytest.fixture
def dataset(runtime: Runtime) -> Runtime:
    return runtime


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


@pytest.fixture
def reader(dataset: Runtime, server_url: str) -> Iterator[Any]:
    """A login in leadengine_reader (created here: the checks need it), as a job connects."""
    with reader_login(dataset.db, server_url) as conn:
        yield conn


def _examples() -> dict[str, str]:
    """Every SQL block of read-model.md's examples and of reports.md, by its lead sentence."""
    found = {}
    for doc, start in ((DOC, "## Example queries"), (DOC.with_name("reports.md"), "")):
        text = doc.read_text().split(start, 1)[1] if start else doc.read_text()
        parts = re.split(r"```sql\n(.*?)```", text, flags=re.S)  # text, query, text, ...
        for before, query in zip(parts[::2], parts[1::2], strict=False):
            found[before.strip().split("\n\n")[-1]] = query
    return found


def test_every_example_pins_utc_and_answers_the_same_in_any_time_zone(
    dataset: Runtime, reader: Any
) -> None:
    read = read_schema(dataset.db.schema)
    examples = _examples()
    assert len(examples) >= 10
    for lead, query in examples.items():
        if re.search(r"date_trunc|to_char|::date", query):
            assert "AT TIME ZONE 'UTC'" in query, lead
        q = query.replace("leadengine_read.", f'"{read}".')
        answers = []
        for zone in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
            reader.execute(sql.SQL("SET TimeZone = {}").format(sql.Literal(zone)))
            answers.append(reader.execute(q).fetchall())  # type: ignore[arg-type]
        assert answers[0], lead  # every example answers something on generated data
        assert answers[0] == answers[1] == answers[2], lead


def _example(lead_starts: str) -> str:
    [query] = [q for lead, q in _examples().items() if lead.startswith(lead_starts)]
    return query


def test_the_examples_give_the_kpi_views_numbers(dataset: Runtime, reader: Any) -> None:
    read = read_schema(dataset.db.schema)

    def run(query: str) -> list[tuple[Any, ...]]:
        return reader.execute(query.replace("leadengine_read.", f'"{read}".')).fetchall()  # type: ignore[no-any-return]

    flow = run(_example("Lead flow:"))
    expected = run(
        "SELECT month, stage, sum(leads)::bigint FROM leadengine_read.kpi_lead_flow "
        "GROUP BY month, stage, position ORDER BY month, position"
    )
    assert flow == expected and len(flow) > 10
    weekly = run(_example("MQLs per week"))
    expected = run(
        "SELECT week, source_channel, sum(leads)::bigint FROM leadengine_read.kpi_lead_flow "
        "WHERE stage = 'mql' GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert weekly == expected and len(weekly) > 10


def test_one_mql_definition_lead_by_lead(dataset: Runtime, reader: Any, leadengine: Any) -> None:
    """lead_current's stage times are kpi_stage_reached's (a skip reaches what it skips), for
    every lead and stage, and count what `report funnel` counts; `mql_entered_at` is the
    rule-only MQL, and the data has leads where the two differ."""
    read = sql.Identifier(read_schema(dataset.db.schema))
    mismatches = reader.execute(
        sql.SQL(
            """
            WITH l AS (
                SELECT lead_id, unnest(ARRAY['lead', 'mql', 'sal', 'sql', 'opportunity',
                                             'customer']) AS stage,
                       unnest(ARRAY[captured_at, mql_at, sal_at, sql_at, opportunity_at,
                                    customer_at]) AS at
                FROM {r}.lead_current)
            SELECT count(*) FILTER (WHERE l.at IS DISTINCT FROM k.reached_at),
                   count(k.lead_id)
            FROM l FULL JOIN {r}.kpi_stage_reached k USING (lead_id, stage)
            WHERE l.at IS NOT NULL OR k.lead_id IS NOT NULL"""
        ).format(r=read)
    ).fetchone()
    assert mismatches[0] == 0 and mismatches[1] > 0
    mql_leads, mqls, entered, funnel, rule = reader.execute(
        sql.SQL(
            "SELECT count(mql_at), count(DISTINCT person_id) FILTER (WHERE mql_at IS NOT NULL), "
            "count(mql_entered_at), "
            "(SELECT reached FROM {r}.kpi_funnel WHERE stage = 'mql'), "
            "(SELECT count(DISTINCT lead_id) FROM {r}.lead_stage_history WHERE to_stage = 'mql') "
            "FROM {r}.lead_current"
        ).format(r=read)
    ).fetchone()
    assert mqls == funnel  # people, as kpi_funnel and the CLI count (docs/identity.md)
    code, out = leadengine("report", "funnel", "--format", "json")
    assert code == 0
    cli = {row["stage"]: row["reached"] for row in json.loads(out)["stages"]}
    columns = ("captured_at", "mql_at", "sal_at", "sql_at", "opportunity_at", "customer_at")
    counts = reader.execute(
        sql.SQL("SELECT {} FROM {}.lead_current").format(
            sql.SQL(", ").join(
                sql.SQL("count(DISTINCT person_id) FILTER (WHERE {} IS NOT NULL)").format(
                    sql.Identifier(c)
                )
                for c in columns
            ),
            read,
        )
    ).fetchone()
    assert list(counts) == [
        cli[s] for s in ("lead", "mql", "sal", "sql", "opportunity", "customer")
    ]
    assert entered == rule < mql_leads  # some leads skipped mql: the definitions differ on them


def test_contract_info_tells_caught_up_from_behind(
    dataset: Runtime, reader: Any, leadengine: Any
) -> None:
    info = sql.SQL(
        "SELECT projection, contract_version, position, log_head, lag, last_projected_at "
        "FROM {}.contract_info ORDER BY projection"
    ).format(sql.Identifier(read_schema(dataset.db.schema)))
    before = reader.execute(info).fetchall()
    assert [r[0] for r in before] == sorted(PROJECTIONS)
    assert {r[1] for r in before} == {readmodel.CONTRACT_VERSION}
    assert all(r[3] > 0 and r[4] == 0 and r[2] == r[3] for r in before)  # caught up
    dataset.app.ingest([validate_event(e) for e in generate(20, seed=99)])  # not projected
    behind = reader.execute(info).fetchall()
    assert all(r[4] > 0 and r[4] == r[3] - r[2] for r in behind), (before, behind)
    assert [r[5] for r in behind] == [r[5] for r in before]  # nothing projected meanwhile
    assert leadengine("project")[0] == 0
    after = reader.execute(info).fetchall()
    assert all(r[4] == 0 for r in after)
    assert all(a[5] > b[5] for a, b in zip(after, before, strict=True))


def test_current_state_rows_say_when_their_latest_event_was_recorded(
    dataset: Runtime, reader: Any
) -> None:
    """`recorded_at` on lead_current, lead_scores, lead_sla and lead_sla_rounds: the recorded
    clock of the lead's latest event, so never before any recorded row of its history."""
    read = sql.Identifier(read_schema(dataset.db.schema))
    nulls, early, leads = reader.execute(
        sql.SQL(
            """
            WITH seen AS (
                SELECT lead_id, max(recorded_at) AS latest FROM (
                    SELECT lead_id, recorded_at FROM {r}.lead_touchpoints
                    UNION ALL SELECT lead_id, recorded_at FROM {r}.lead_milestones
                    UNION ALL SELECT lead_id, recorded_at FROM {r}.lead_stage_history) h
                GROUP BY lead_id)
            SELECT count(*) FILTER (WHERE c.recorded_at IS NULL),
                   count(*) FILTER (WHERE c.recorded_at < s.latest), count(*)
            FROM {r}.lead_current c JOIN seen s USING (lead_id)"""
        ).format(r=read)
    ).fetchone()
    assert leads > 0 and nulls == 0 and early == 0
    for view in ("lead_scores", "lead_sla", "lead_sla_rounds"):
        differ = reader.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE v.recorded_at IS DISTINCT FROM "
                "c.recorded_at) FROM {r}.{v} v JOIN {r}.lead_current c USING (lead_id)"
            ).format(r=read, v=sql.Identifier(view))
        ).fetchone()
        assert differ[0] > 0 and differ[1] == 0, view
