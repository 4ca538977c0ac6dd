"""The demo as a new user reads it: rejects still visible after it exits, and the MQL figures of
`whatif` and `report funnel` reconciled in the output."""

from __future__ import annotations

import json

from engine.cli.commands.demo import BAD_DEMO_LINES
from engine.postgres import db as dbmod
from tests.e2e.test_cli import ROOT, run


def test_demo_rejects_outlive_the_demo_and_whatif_reconciles_with_the_funnel(
    cli_env: dict[str, str], database: dbmod.Database
) -> None:
    demo_schema = f"{database.schema}_demo"
    shown = database.with_schema(demo_schema)
    try:
        out = run(cli_env, "demo", "--leads", "120").stdout  # through its own Kafka broker
        out = " ".join(out.split())  # the note may be wrapped to the terminal's width
        assert "deadletters list" in out and f"{demo_schema}.dead_letters" in out
        # the demo's broker is gone; the rejects are still there for the user
        env = cli_env | {"LEADENGINE_DATABASE_SCHEMA": demo_schema}
        listed = json.loads(run(env, "deadletters", "list", "--format", "json").stdout)
        assert len(listed) == len(BAD_DEMO_LINES)
        assert all(row["origin"].startswith("kafka:") for row in listed)
        assert {row["event_id"] for row in listed} >= {"bad-2", "bad-3"}

        funnel = json.loads(run(env, "report", "funnel", "--format", "json").stdout)
        reached = {s["stage"]: s["reached"] for s in funnel["stages"]}["mql"]
        rules = str(ROOT / "engine" / "default_rules.yaml")
        what = json.loads(run(env, "whatif", "--rules", rules, "--format", "json").stdout)
        assert what["reached_mql_old"] == reached  # the funnel's figure, counted the same way
        implied = reached - what["mql_old"]
        assert implied > 0  # some leads were taken by sales before any MQL decision
        text = " ".join(run(env, "whatif", "--rules", rules).stdout.split())
        assert f"MQL decisions: {what['mql_old']} -> {what['mql_new']}" in text
        assert f"as `report funnel` counts): {reached} -> {reached}" in text
        assert f"Under the current rules {implied} of them have no MQL decision" in text
    finally:
        dbmod.drop_schema(shown)
