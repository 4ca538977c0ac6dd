"""Fixtures shared by the integration tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.cli import main as cli
from engine.domain.generator import generate
from engine.postgres.db import Database
from engine.readmodel import READER_ROLE
from engine.settings import get_settings

Cli = Callable[..., tuple[int, str]]


def load_for_readers(
    leadengine: Cli, tmp_path: Any, leads: int, seed: int, *, project: bool = True
) -> None:
    """Generated journeys ingested (and projected) through the CLI, attribution windows
    refreshed, then `db init` granting the reader role its views: the data a reporting job's
    test reads."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in generate(leads, seed=seed)))
    assert leadengine("ingest", str(path))[0] == 0
    if project:
        assert leadengine("project")[0] == 0
    code, out = leadengine("projections", "refresh-attribution")  # attribution_by_window
    assert code == 0 and out.startswith("refreshed every window"), out
    code, out = leadengine("db", "init")
    assert code == 0 and "can read them and nothing else" in out, out


@contextmanager
def reader_login(db: Database, server_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A login role of a reporting job's own, member of leadengine_reader (created here: the
    checks need it, never skipped), connected as a job connects; dropped afterwards."""
    name = f"rpt_{uuid.uuid4().hex[:8]}"
    with db.connect() as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(name), sql.Identifier(READER_ROLE)
            )
        )
    params = conninfo_to_dict(server_url) | {"user": name}
    try:
        with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
            yield conn
    finally:
        with db.connect() as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def leadengine(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    """Run the CLI in-process against this test's schema; returns (exit code, stdout).

    Everything it wrote to stderr (the logs) is kept in `run.stderr`."""
    for k, v in cli_env.items():
        if k.startswith("LEADENGINE_"):
            monkeypatch.setenv(k, v)
    get_settings.cache_clear()

    stderr: list[str] = []

    def run(*argv: str) -> tuple[int, str]:
        stderr.append(capsys.readouterr().err)
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        stderr.append(err)
        return code, out

    run.stderr = stderr  # type: ignore[attr-defined]
    yield run
    get_settings.cache_clear()
