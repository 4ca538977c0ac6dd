"""A read-only command pointed at a place with no event store refuses, creating nothing: one
line naming where it looked (no password) and what to do, exit code 2, no traceback; no schema,
no read views, no master key, no embedded server's data. A writer (`ingest`) still creates the
store, after which the same readers answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.postgres import db as dbmod
from tests.e2e.test_cli import run
from tests.e2e.test_mistakes import SECRET, _url

SCHEMA = "nothing_here"
READERS = [
    ["lead", "show", "ada@example.com"],
    ["lead", "history", "ada@example.com"],
    ["lead", "explain", "ada@example.com"],
    ["report", "funnel"],
    ["report", "identity"],
    ["account", "show", "acme"],
    ["whatif", "--rules", "engine/default_rules.yaml"],
    ["projections", "list"],
    ["status"],
    # commands that change what is there, never a store of their own: nothing to act on
    ["forget", "ada@example.com", "--reason", "erasure request"],
    ["anchor"],
    ["deadletters", "replay", "--all"],
    ["deadletters", "purge", "--all"],
    ["duplicates", "accept", "--reason", "same person", "0" * 32, "1" * 32],
    ["projections", "retry"],
    ["projections", "rebuild", "leads"],
    ["projections", "refresh-attribution"],
    ["timers"],  # a service, but of the leads stored: it made an empty store (hostile trial)
]


def schemas(server_url: str) -> set[str]:
    with dbmod.from_url(server_url, "public").connect() as conn:
        rows = conn.execute("SELECT nspname FROM pg_catalog.pg_namespace").fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def env(cli_env: dict[str, str], server_url: str, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment on a schema nobody has made, the URL carrying a password."""
    return cli_env | {
        "LEADENGINE_DATABASE_URL": _url(server_url),
        "LEADENGINE_DATABASE_SCHEMA": SCHEMA,
        "LEADENGINE_HOME": str(tmp_path / "fresh-home"),
    }


@pytest.mark.parametrize("argv", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_reader_on_no_event_store_refuses_and_creates_nothing(
    env: dict[str, str], server_url: str, argv: list[str]
) -> None:
    before = schemas(server_url)
    proc = run(env, *argv, ok=False)
    assert proc.returncode == 2, proc.stderr
    server = dbmod.from_url(server_url, SCHEMA)
    where = f"postgresql://{server.user}@{server.host}:{server.port}/{server.dbname}/{SCHEMA}"
    assert proc.stderr.strip() == (
        f"leadengine: no leadengine event store at {where}; run `leadengine ingest` or "
        "`leadengine consume` first, or check LEADENGINE_DATABASE_URL (and "
        "LEADENGINE_DATABASE_SCHEMA)"
    )
    assert SECRET not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert schemas(server_url) == before  # neither the schema nor its read views
    assert not Path(env["LEADENGINE_HOME"]).exists()  # no master key made either


def test_a_reader_without_a_url_does_not_start_an_embedded_server(
    env: dict[str, str], tmp_path: Path
) -> None:
    bare = {k: v for k, v in env.items() if k != "LEADENGINE_DATABASE_URL"}
    proc = run(bare, "report", "funnel", ok=False)
    assert proc.returncode == 2
    pgdata = tmp_path / "fresh-home" / "pgdata"
    assert proc.stderr.strip().startswith(
        f"leadengine: no leadengine event store at the embedded server's {pgdata}; run"
    )
    assert not pgdata.exists()


def test_a_writer_still_creates_the_store_then_readers_answer(
    env: dict[str, str], server_url: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    run(env, "generate", "--leads", "3", "--seed", "5", "-o", str(events))
    run(env, "ingest", str(events))
    assert {SCHEMA, f"{SCHEMA}_read"} <= schemas(server_url)
    key = next(
        e["subject"]
        for e in map(json.loads, events.read_text().splitlines())
        if e["type"] == "lead.captured"
    )
    shown = run(env, "lead", "show", key, "--format", "json")
    assert json.loads(shown.stdout)
    funnel = run(env, "report", "funnel", "--format", "json")
    assert json.loads(funnel.stdout)
