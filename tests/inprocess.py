"""The CLI run in the test's own process, for tests about what a command answers rather than
about the process (its signals, exit on a crash, its environment): the same argv, environment,
exit code, stdout and stderr as `python -m engine`, without a Python start and imports per call."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from engine.cli import main as cli
from engine.settings import get_settings


def run_in_process(
    env: dict[str, str], *args: str, stdin: bytes | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    """`leadengine *args` under exactly `env` (with `stdin` as its standard input: empty if
    None); argparse's usage errors exit 2 as they do."""
    saved, saved_stdin, saved_stdout = dict(os.environ), sys.stdin, sys.__stdout__
    out, err = io.StringIO(), io.StringIO()
    try:
        # stdout is not a terminal, as for a process on a pipe: the table width falls back to
        # COLUMNS or 100 columns, never the width of whatever terminal runs the tests
        sys.__stdout__ = out  # type: ignore[misc]
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(stdin or b"")), encoding="utf-8")
        os.environ.clear()
        os.environ.update(env)
        get_settings.cache_clear()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin, sys.__stdout__ = saved_stdin, saved_stdout  # type: ignore[misc]
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
    proc = subprocess.CompletedProcess(["leadengine", *args], code, out.getvalue(), err.getvalue())
    if ok:
        assert code == 0, proc.stderr
    return proc
