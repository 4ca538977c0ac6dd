"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine import cli
from engine.settings import get_settings


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
