"""The CLI starts without importing every command module (a hostile trial: 4.5 s of an 8 s
start-up went to importing all of them): only the invoked command's modules are imported, and
`--help` still lists every command, as the modules themselves describe it."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]

#: what a command module pulls in and a start-up must not pay for unless the command needs it
HEAVY = ("psycopg", "kafka", "pydantic", "eventsourcing", "engine.aggregates", "engine.postgres")


def _imported_by(argv: list[str]) -> set[str]:
    """The modules imported by building the parser for `argv`, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from engine.cli.main import build_parser\n"
        f"build_parser({argv!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["no-such-command"]])
def test_help_and_version_import_no_command_module(argv: list[str]) -> None:
    modules = _imported_by(argv)
    assert not {m for m in modules if m.startswith("engine.cli.commands.")}
    assert not _heavy(modules)


def test_a_command_imports_only_its_own_modules() -> None:
    modules = _imported_by(["lead", "show", "k"])
    commands = {m for m in modules if m.startswith("engine.cli.commands.")}
    # leads takes `lead export` from audit
    assert commands == {"engine.cli.commands.leads", "engine.cli.commands.audit"}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {c.dest: c.help for c in sub._choices_actions}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = sub.choices[name]
    return found


def test_the_table_lists_what_the_modules_register() -> None:
    """COMMANDS says, without importing them, what the modules register: every command in the
    same order with the same help, and each command's full parser built from its modules alone
    is the one built from all of them (a module left out of its row would lose subcommands)."""
    everything = build_parser()
    assert _helps(everything) == {name: help for name, help, _ in COMMANDS}
    assert _helps(build_parser(["--help"])) == _helps(everything)
    for name, _, _ in COMMANDS:
        alone = _subparser(build_parser([name]), name)
        assert alone.format_help() == _subparser(everything, name).format_help(), name
