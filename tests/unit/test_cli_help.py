"""Every option of every command says what it does in --help."""

from __future__ import annotations

import argparse

from tests.unit.test_cli_clocks import PARSERS


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"leadengine {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in PARSERS.items()
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help and action.help.strip())
    ]
    assert missing == []
