"""What the CLI prints is safe and readable: hostile keys and fields reach the terminal escaped
and spreadsheets neutralised, default tables fit 100 columns, money and booleans read the same
in every format, and long commands show percentage and ETA on a terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

from rich.cells import cell_len

from engine.domain.generator import generate, lines
from tests.e2e.test_cli import ROOT
from tests.e2e.test_cli import run as run_process
from tests.inprocess import run_in_process as run

KEY = "crm-\x1b]0;pwned\x07\x1b[2J\u202eevil"
SHOWN = "crm-\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil"
CHANNEL = '=HYPERLINK("http://x")\x1b[31m'
UNSAFE = {"Cc", "Cf", "Zl", "Zp"}


def _event(n: int, kind: str, data: dict[str, object]) -> str:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"hostile-{n}",
            "source": "test",
            "type": kind,
            "subject": KEY,
            "time": f"2026-03-0{n}T09:00:00Z",
            "data": data,
        }
    )


def _raw_controls(text: str) -> list[str]:
    return [c for line in text.split("\n") for c in line if unicodedata.category(c) in UNSAFE]


def _widest(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


def test_a_hostile_key_and_field_are_shown_escaped_and_neutralised(
    cli_env: dict[str, str],
) -> None:
    events = [
        _event(1, "touch.page_viewed", {"channel": CHANNEL, "campaign": "-2+3\ttab"}),
        _event(2, "lead.captured", {"email": "a@b.co", "company": "Acme\nInc\u202e"}),
    ]
    run(cli_env, "ingest", "-", stdin="\n".join(events).encode())
    for command in (["lead", "show", KEY], ["lead", "history", KEY], ["lead", "explain", KEY]):
        out = run(cli_env, *command).stdout
        assert _raw_controls(out) == [], command
        assert SHOWN in out.replace("\n", ""), command
    shown = run(cli_env, "lead", "show", KEY).stdout
    assert "Acme\\nInc\\u202e" in shown
    sources = run(cli_env, "report", "kpis", "--section", "sources").stdout
    assert _raw_controls(sources) == [] and '=HYPERLINK("http://x")\\x1b[31m' in sources
    table = run(cli_env, "report", "kpis", "--section", "sources", "--format", "csv").stdout
    channels = [row[0] for row in csv.reader(io.StringIO(table))][1:]
    assert "'" + CHANNEL in channels  # neutralised for a spreadsheet, otherwise exact
    exact = json.loads(run(cli_env, "lead", "show", KEY, "--format", "json").stdout)
    assert exact["key"] == KEY  # JSON is exact: its encoder escapes, nothing is lost


def _ingest_demo(env: dict[str, str], tmp_path: Path, leads: int = 60) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines(generate(leads, seed=5))))
    run(env, "ingest", str(path))
    return path


def _stricter_rules(env: dict[str, str], tmp_path: Path) -> Path:
    text = run(env, "rules", "show").stdout
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(re.sub(r"total_at_least: \d+", "total_at_least: 95", text, count=1))
    return stricter


def test_default_tables_fit_100_columns_and_wide_shows_everything(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "COLUMNS": "100"}
    _ingest_demo(env, tmp_path)
    stricter = _stricter_rules(env, tmp_path)
    commands = [
        ["report", "kpis"],
        ["report", "attribution", "--model", "all", "--by", "campaign"],
        ["report", "sla", "--occurred-by", "2026-04-01T00:00:00Z"],
        ["report", "funnel"],
        ["lead", "history", "crm-0000001"],
        ["lead", "explain", "crm-0000001"],
        ["lead", "show", "crm-0000001"],
        ["whatif", "--rules", str(stricter)],
        ["deadletters", "list"],
        ["projections", "list"],
    ]
    for command in commands:
        out = run(env, *command).stdout
        assert _widest(out) <= 100, (command, out)
    kpis = run(env, "report", "kpis").stdout
    assert "columns not shown" in kpis and "--wide" in kpis
    wide = run(env, "report", "kpis", "--wide").stdout
    assert _widest(wide) > 100 and "columns not shown" not in wide
    assert "contribution_pct" in wide


def test_money_and_booleans_read_the_same_in_csv_and_json(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    _ingest_demo(cli_env, tmp_path)
    money = ("cost", "revenue", "attributed_revenue", "revenue_per_customer", "cost_per_lead")
    cents = re.compile(r"^\d+\.\d{2}$")
    doc = json.loads(
        run(cli_env, "report", "kpis", "--section", "money", "--format", "json").stdout
    )
    amounts = [row[k] for row in doc["money"] for k in money if row[k] is not None]
    assert amounts and all(isinstance(a, str) and cents.match(a) for a in amounts), amounts
    text = run(cli_env, "report", "kpis", "--section", "money", "--format", "csv").stdout
    cells = [r[k] for r in csv.DictReader(io.StringIO(text)) for k in money if r[k]]
    assert cells == amounts
    stricter = _stricter_rules(cli_env, tmp_path)
    changed = run(cli_env, "whatif", "--rules", str(stricter), "--format", "csv").stdout
    flags = {r[k] for r in csv.DictReader(io.StringIO(changed)) for k in ("old_mql", "new_mql")}
    assert flags and flags <= {"true", "false"}


def _on_a_terminal(env: dict[str, str], *args: str) -> str:
    """Run the CLI with stderr on a pseudo-terminal; what it drew there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    assert proc.wait(timeout=300) == 0
    reader.join(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_ingest_and_whatif_show_percentage_and_eta_on_a_terminal(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines(generate(30, seed=2))))
    total = sum(1 for line in path.read_text().splitlines() if line.strip())
    drawn = _on_a_terminal(cli_env, "ingest", str(path), "--no-project")
    assert "ingest [" in drawn and "100%" in drawn and f"{total:,}/{total:,}" in drawn
    assert "eta " in drawn
    drawn = _on_a_terminal(cli_env, "whatif", "--rules", str(_stricter_rules(cli_env, tmp_path)))
    assert "replay (events) [" in drawn and "100%" in drawn and "eta " in drawn
    assert "replay (facts folded) [" in drawn  # the fold after the read
    quiet = run_process(cli_env, "ingest", str(path), "--no-project")
    assert "%" not in quiet.stderr and "eta" not in quiet.stderr  # not a terminal: silent


def test_publish_shows_percentage_and_eta_on_a_terminal(
    kafka_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines(generate(10, seed=4))))
    total = sum(1 for line in path.read_text().splitlines() if line.strip())
    drawn = _on_a_terminal(kafka_env, "publish", str(path))
    assert "publish [" in drawn and "100%" in drawn and f"{total:,}/{total:,}" in drawn
    assert "eta " in drawn
