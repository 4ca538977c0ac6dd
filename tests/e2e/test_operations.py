"""Running it as a service: the projector follows the log and stops cleanly on SIGTERM, and
`status --check` gives probes an exit code."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from psycopg import sql

from engine.domain.generator import generate, lines
from engine.postgres import db as dbmod
from tests.e2e.test_cli import ROOT
from tests.inprocess import run_in_process as run


def _leads(database: dbmod.Database) -> int:
    try:
        with database.connect() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(database.schema, "lead_state")
                )
            ).fetchone()
    except Exception:
        return -1
    return int(row[0]) if row else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> dict[str, float]:
    """The unlabelled samples of /metrics (retried while the server starts)."""
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("no /metrics")
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_projector_follows_the_log_and_stops_on_sigterm(
    cli_env: dict[str, str], database: dbmod.Database, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    events = generate(30, seed=9)
    half = len(events) // 2
    first.write_text("".join(line + "\n" for line in lines(events[:half])))
    second.write_text("".join(line + "\n" for line in lines(events[half:])))
    run(cli_env, "db", "init")
    run(cli_env, "ingest", str(first), "--no-project")
    check = run(cli_env, "status", "--check", "--max-lag", "0", ok=False)
    assert check.returncode == 1 and "projection leads lag" in check.stderr

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "project", "--follow"],
        env=cli_env | {"LEADENGINE_LOG_FORMAT": "json", "LEADENGINE_METRICS_PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _leads(database) <= 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        run(cli_env, "ingest", str(second), "--no-project")  # arrives while it follows
        expected = len(
            {
                e["subject"]
                for e in events
                if not e["type"].startswith(("campaign.", "rep.", "account."))
            }
        )
        while _leads(database) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leads(database) == expected
        assert run(cli_env, "status", "--check", "--max-lag", "0", ok=False).returncode == 0
        scraped = _metrics(port)
        projections = json.loads(run(cli_env, "status", "--format", "json").stdout)["projections"]
        head = projections[0]["log_head"]
        assert {p["position"] for p in projections} == {head}
        assert all(p["events_per_s"] > 0 for p in projections)  # from each one's last batch
        assert scraped["leadengine_projector_events_total"] == head
        assert scraped["leadengine_projection_position"] == head
        assert scraped["leadengine_projector_batch_seconds_count"] >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    logged = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert logged[:2] == ["metrics served", "projector following the log"]
    assert logged[-1] == "projector stopped"
    status = json.loads(run(cli_env, "status", "--format", "json").stdout)
    assert [p["lag"] for p in status["projections"]] == [0, 0, 0, 0]
