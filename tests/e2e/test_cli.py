"""The CLI as a user runs it: a real process, a real PostgreSQL, files in and text out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.postgres import db as dbmod
from tests.inprocess import run_in_process

ROOT = Path(__file__).resolve().parents[2]


def run(
    env: dict[str, str], *args: str, stdin: bytes | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        input=stdin.decode() if stdin is not None else None,
        text=True,
        timeout=300,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_generate_ingest_show_history_funnel(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run(cli_env, "generate", "--leads", "60", "--seed", "3", "-o", str(path))
    again = run(cli_env, "generate", "--leads", "60", "--seed", "3").stdout
    assert path.read_text() == again  # deterministic
    with path.open("ab") as fh:
        fh.write(b'{"not": "a cloudevent"}\n')
    ingest = run(cli_env, "ingest", str(path), "--format", "json", ok=False)
    assert ingest.returncode == 1, ingest.stderr  # done, but a line was rejected (as publish)
    counts = json.loads(ingest.stdout)
    lines = len(path.read_text().splitlines())
    assert counts["lines"] == lines
    assert counts["rejected"] == 1 and counts["duplicates"] > 0
    assert counts["accepted"] + counts["duplicates"] + counts["rejected"] == lines
    # redelivering the whole file changes nothing
    again = run(cli_env, "ingest", str(path), "--format", "json", ok=False)
    assert again.returncode == 1  # the bad line is rejected again
    counts2 = json.loads(again.stdout)
    assert counts2["accepted"] == 0 and counts2["projected"] == 0

    shown = json.loads(run(cli_env, "lead", "show", "crm-0000001", "--format", "json").stdout)
    assert shown["key"] == "crm-0000001" and shown["stage"]
    history = json.loads(run(cli_env, "lead", "history", "crm-0000001", "--format", "json").stdout)
    assert history[0]["event"] == "created"
    assert history[-1]["stage"] == shown["stage"]
    assert history[-1]["score"] == shown["score"]["total"]
    assert shown["email"] and shown["email"] not in json.dumps(history)  # no PII in history
    table = run(cli_env, "lead", "history", "crm-0000001").stdout
    assert "History of lead crm-0000001" in table

    explain = json.loads(run(cli_env, "lead", "explain", "crm-0000001", "--format", "json").stdout)
    assert explain["total"] == shown["score"]["total"]

    funnel = json.loads(run(cli_env, "report", "funnel", "--format", "json").stdout)
    assert funnel["leads_total"] == len(
        {
            json.loads(x)["subject"]
            for x in path.read_text().splitlines()[:-1]
            if not json.loads(x)["type"].startswith(("campaign.", "rep.", "account."))
        }
    )
    reached = [s["reached"] for s in funnel["stages"]]
    assert reached == sorted(reached, reverse=True)  # a funnel narrows

    dead = json.loads(run(cli_env, "deadletters", "list", "--format", "json").stdout)
    assert len(dead) == 1 and dead[0]["raw"] == '{"not": "a cloudevent"}'


def test_ingest_from_stdin_and_unknown_lead(cli_env: dict[str, str]) -> None:
    event = {
        "specversion": "1.0",
        "id": "s1",
        "source": "t",
        "type": "lead.captured",
        "subject": "k-stdin",
        "time": "2026-01-01T00:00:00Z",
        "data": {"email": "a@b.co"},
    }
    out = json.loads(
        run(cli_env, "ingest", "-", "--format", "json", stdin=json.dumps(event).encode()).stdout
    )
    assert out["accepted"] == 1
    missing = run(cli_env, "lead", "show", "nobody", ok=False)
    assert missing.returncode == 2 and "no lead with key 'nobody'" in missing.stderr
    bad_file = run(cli_env, "ingest", "/nonexistent.jsonl", ok=False)
    assert bad_file.returncode == 2 and "cannot read" in bad_file.stderr


def test_demo_runs_end_to_end(cli_env: dict[str, str]) -> None:
    schema = cli_env["LEADENGINE_DATABASE_SCHEMA"] + "_demo"
    try:
        # the real path: publish to an embedded Kafka-protocol broker, consume, project
        out = json.loads(run(cli_env, "demo", "--leads", "80", "--format", "json").stdout)
        ingest = out["ingest"]
        assert ingest["consumed"] == ingest["published"] and ingest["dead_lettered"] == 3
        assert ingest["accepted"] > 0
        stages = {s["stage"]: s["reached"] for s in out["funnel"]["stages"]}
        assert stages["lead"] > stages["mql"] > 0 and stages["customer"] > 0
        # straight into the store: the same events give the same funnel
        direct = json.loads(
            run(cli_env, "demo", "--leads", "80", "--direct", "--format", "json").stdout
        )
        assert direct["ingest"]["rejected"] == 3
        assert direct["ingest"]["accepted"] == ingest["accepted"]
        assert direct["funnel"] == out["funnel"]
        text = run(cli_env, "demo", "--leads", "30").stdout
        assert "Funnel:" in text and "customer" in text and "through Kafka" in text
    finally:
        dbmod.drop_schema(dbmod.from_url(cli_env["LEADENGINE_DATABASE_URL"], schema))


def test_schemas_check_and_rules_check(cli_env: dict[str, str], tmp_path: Path) -> None:
    run(cli_env, "schemas", "export", "--check", str(ROOT / "schemas"))
    stale = tmp_path / "schemas"
    run(cli_env, "schemas", "export", str(stale))
    (stale / "deal.won.json").write_text("{}")
    assert run(cli_env, "schemas", "export", "--check", str(stale), ok=False).returncode == 1
    bad = tmp_path / "rules.yaml"
    bad.write_text('name: x\nversion: "1"\nmql:\n  total_at_least: 300\n')
    proc = run(cli_env, "rules", "check", str(bad), ok=False)
    assert proc.returncode == 2 and f"{bad}:4" in proc.stderr
    shipped = tmp_path / "default.yaml"
    shipped.write_text(run(cli_env, "rules", "show").stdout)
    assert "ok (default@" in run(cli_env, "rules", "check", str(shipped)).stdout


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["demo"],
        ["generate"],
        ["ingest"],
        ["project"],
        ["lead", "show"],
        ["lead", "history"],
        ["lead", "explain"],
        ["report", "funnel"],
        ["schemas", "export"],
        ["rules", "check"],
        ["deadletters", "list"],
        ["db", "init"],
        ["db", "migrate"],
        ["verify"],
        ["anchor"],
        ["forget"],
        ["lead", "export"],
        ["status"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    # in-process: help is argparse's answer, the same in a process of its own
    proc = run_in_process(dict(os.environ), *command, "--help", ok=False)
    assert proc.returncode == 0 and "usage: leadengine" in proc.stdout
