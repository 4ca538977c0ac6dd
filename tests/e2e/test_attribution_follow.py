"""The projector as a service refreshes attribution by window: `project --follow
--refresh-attribution SECONDS` fills attribution_windows up to the log's head beside the
projection, and refreshes again what events arriving later touch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from psycopg import sql

from engine.domain.generator import generate, lines
from engine.postgres import db as dbmod
from tests.e2e.test_cli import ROOT, run
from tests.e2e.test_operations import _free_port


def _windows(database: dbmod.Database) -> tuple[int, int, int]:
    """(rows, the lowest through_position, the log's head); zeros before the tables exist."""
    try:
        with database.connect() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(min(through_position), 0), "
                    "(SELECT coalesce(max(notification_id), 0) FROM {e}) FROM {w}"
                ).format(
                    w=sql.Identifier(database.schema, "attribution_windows"),
                    e=sql.Identifier(database.schema, "leadengine_events"),
                )
            ).fetchone()
    except Exception:
        return 0, 0, 0
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _caught_up(database: dbmod.Database, deadline: float) -> tuple[int, int, int]:
    state = _windows(database)
    while not (state[0] > 0 and state[1] == state[2]) and time.monotonic() < deadline:
        time.sleep(0.3)
        state = _windows(database)
    return state


def test_the_following_projector_refreshes_attribution_windows(
    cli_env: dict[str, str], database: dbmod.Database, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    events = generate(60, seed=21)
    half = len(events) // 2
    first.write_text("".join(line + "\n" for line in lines(events[:half])))
    second.write_text("".join(line + "\n" for line in lines(events[half:])))
    run(cli_env, "db", "init")
    run(cli_env, "ingest", str(first), "--no-project")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "project", "--follow", "--refresh-attribution", "1"],
        env=cli_env
        | {"LEADENGINE_LOG_FORMAT": "json", "LEADENGINE_METRICS_PORT": str(_free_port())},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rows, through, head = _caught_up(database, time.monotonic() + 90)
        assert rows > 0 and through == head, (rows, through, head)
        run(cli_env, "ingest", str(second), "--no-project")  # arrives while it follows
        rows, through, later = _caught_up(database, time.monotonic() + 90)
        assert later > head and through == later, (rows, through, later)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    logged = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    refreshed = [e for e in logged if e["event"] == "attribution windows refreshed"]
    assert len(refreshed) >= 2 and all(e["windows"] > 0 for e in refreshed)
    assert not [e for e in logged if e["event"] == "attribution refresh failed"]
