"""`report attribution | kpis | html` as a user runs them, and the HTML page in a real browser."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from engine.analytics.attribution import MODELS
from tests.inprocess import run_in_process as run

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
)


@pytest.fixture(scope="module")
def browser() -> str:
    found = os.environ.get("LEADENGINE_TEST_CHROMIUM") or next(
        (p for p in map(shutil.which, BROWSERS) if p), None
    )
    if not found:
        pytest.fail(
            "no headless Chromium: `make test` installs Debian's chromium; or set "
            "LEADENGINE_TEST_CHROMIUM to a Chromium or Chrome binary"
        )
    return found


@pytest.fixture
def ingested(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "events.jsonl"
    run(cli_env, "generate", "--leads", "200", "--seed", "11", "-o", str(path))
    run(cli_env, "ingest", str(path))
    return cli_env


def test_attribution_formats_and_errors(ingested: dict[str, str]) -> None:
    env = ingested
    doc = json.loads(run(env, "report", "attribution", "--format", "json").stdout)
    assert list(doc["models"]) == list(MODELS) and doc["conversions"] > 0
    total = doc["side_by_side"][-1]
    assert total["channel"] == "TOTAL"
    assert all(Decimal(total[m]) == doc["conversions"] for m in MODELS)
    # those sums hold for any weights: the side-by-side rows are each model's own credits, and
    # first touch gives each conversion whole to one channel, not the one last touch picks
    for m in MODELS:
        own = {r["channel"]: Decimal(str(r["credit"])) for r in doc["models"][m]}
        beside = {r["channel"]: Decimal(str(r[m])) for r in doc["side_by_side"][:-1]}
        assert {k: v for k, v in beside.items() if v} == {k: v for k, v in own.items() if v}, m
    first = {r["channel"]: Decimal(str(r["credit"])) for r in doc["models"]["first_touch"]}
    last = {r["channel"]: Decimal(str(r["credit"])) for r in doc["models"]["last_touch"]}
    assert all(v == v.to_integral_value() for v in first.values()) and first != last

    table = run(env, "report", "attribution", "--model", "markov", "--by", "campaign").stdout
    assert "Attribution of" in table and "share_pct" in table

    out = run(env, "report", "attribution", "--model", "shapley", "--value", "revenue",
              "--conversion", "sql", "--format", "csv").stdout  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and set(rows[0]) == {"channel", "credit", "share_pct"}

    saved = run(env, "report", "attribution", "--model", "linear", "--save")
    assert "attribution_credits" in saved.stderr

    bad = run(env, "report", "attribution", "--from", "last tuesday", ok=False)
    assert bad.returncode == 2 and "--from 'last tuesday': expected an RFC 3339" in bad.stderr
    upside = run(
        env, "report", "attribution", "--from", "2026-05-01", "--to", "2026-04-01", ok=False
    )
    assert upside.returncode == 2 and "is not before --to" in upside.stderr
    later = json.loads(
        run(env, "report", "attribution", "--from", "2030-01-01", "--format", "json").stdout
    )
    assert later["conversions"] == 0


def test_kpis_sections_and_windows(ingested: dict[str, str]) -> None:
    env = ingested
    text = run(env, "report", "kpis").stdout
    for title in ("Funnel", "Sales cycle", "Lead flow", "Email by campaign", "Cost per stage"):
        assert title in text
    doc = json.loads(run(env, "report", "kpis", "--format", "json").stdout)
    created = doc["funnel"][0]["reached"]
    assert 100 < created <= doc["leads"] and doc["funnel"][-1]["stage"] == "customer"
    out = run(env, "report", "kpis", "--section", "money", "--by", "campaign", "--format", "csv")
    money = list(csv.DictReader(io.StringIO(out.stdout)))
    assert money[-1]["campaign"] == "TOTAL" and Decimal(money[-1]["cost"]) > 0
    refused = run(env, "report", "kpis", "--format", "csv", ok=False)
    assert refused.returncode == 2 and "CSV holds one table" in refused.stderr
    early = json.loads(
        run(env, "report", "kpis", "--as-of", "2000-01-01T00:00:00Z", "--format", "json").stdout
    )
    assert early["leads"] == 0 and early["funnel"][0]["reached"] == 0
    weeks = run(env, "report", "kpis", "--section", "flow", "--period", "week", "--format", "csv")
    assert weeks.stdout.startswith("week,source_channel,lead,mql")


def test_html_report_renders_in_a_real_browser(
    ingested: dict[str, str], tmp_path: Path, browser: str
) -> None:
    page = tmp_path / "report.html"
    run(ingested, "report", "html", str(page))
    html = page.read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html  # self-contained: nothing to fetch
    profile = tmp_path / "chrome-profile"
    dom = subprocess.run(
        [browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    marks = re.search(r'data-marks="(\d+)"', dom.stdout)
    assert marks and int(marks.group(1)) > 50  # bars and lines of five charts were drawn
    shot = tmp_path / "report.png"
    subprocess.run(
        [browser, *CHROME_FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
         "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a page with charts, not blank
