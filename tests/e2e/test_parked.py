"""Parked leads as an operator meets them: the database rejects one lead's row, `ingest` still
projects everything else, `projections list` / `status` show it, `status --check` fails, and
`projections retry` brings it back once the cause is fixed."""

from __future__ import annotations

import json
from pathlib import Path

from psycopg import sql

from engine.domain.generator import generate, lines
from engine.postgres import db as dbmod
from tests.inprocess import run_in_process as run

TARGET = "crm-0000002"


def _constraint(database: dbmod.Database, add: bool) -> None:
    table = sql.Identifier(database.schema, "lead_state")
    with database.connect() as conn:
        if add:  # an operator's constraint that one lead's row breaks
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT ops_rule CHECK (lead_key <> {})").format(
                    table, sql.Literal(TARGET)
                )
            )
        else:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT ops_rule").format(table))


def _parked(env: dict[str, str]) -> dict[str, int]:
    listed = json.loads(run(env, "projections", "list", "--format", "json").stdout)
    return {row["projection"]: row["parked"] for row in listed}


def test_projections_retry_brings_back_a_parked_lead(
    cli_env: dict[str, str], database: dbmod.Database, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines(generate(30, seed=5))))
    run(cli_env, "db", "init")
    _constraint(database, add=True)

    counts = json.loads(run(cli_env, "ingest", str(path), "--format", "json").stdout)
    assert counts["projected"] > 0 and counts["rejected"] == 0
    assert _parked(cli_env) == {"leads": 1, "touchpoints": 0, "history": 0, "costs": 0}
    status = json.loads(run(cli_env, "status", "--format", "json").stdout)
    assert [(p["name"], p["lag"], p["parked"]) for p in status["projections"]] == [
        ("leads", 0, 1),
        ("touchpoints", 0, 0),
        ("history", 0, 0),
        ("costs", 0, 0),
    ]
    check = run(cli_env, "status", "--check", ok=False)
    assert check.returncode == 1 and "projection leads parked 1 lead(s)" in check.stderr
    assert run(cli_env, "status", "--check", "--allow-parked").returncode == 0  # liveness
    table = run(cli_env, "projections", "list").stdout
    assert "parked" in table.splitlines()[0]

    again = run(cli_env, "projections", "retry", ok=False)  # not fixed yet
    assert again.returncode == 1
    assert "retried 1 parked, 0 back, 1 still parked" in again.stdout
    assert "ops_rule" in again.stdout and TARGET in again.stdout

    _constraint(database, add=False)
    done = json.loads(
        run(cli_env, "projections", "retry", "leads", "--lead", TARGET, "--format", "json").stdout
    )
    assert (done["retried"], done["unparked"], done["still_parked"]) == (1, 1, 0)
    assert _parked(cli_env) == dict.fromkeys(("leads", "touchpoints", "history", "costs"), 0)
    assert run(cli_env, "status", "--check").returncode == 0
    shown = json.loads(run(cli_env, "lead", "show", TARGET, "--format", "json").stdout)
    with database.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT stage, version FROM {} WHERE lead_key = %s").format(
                sql.Identifier(database.schema, "lead_state")
            ),
            (TARGET,),
        ).fetchone()
    assert row == (shown["stage"], shown["version"])  # its row is back, up to date

    bad = run(cli_env, "projections", "retry", "nosuch", ok=False)
    assert bad.returncode == 2 and "unknown projection 'nosuch'" in bad.stderr
