"""Every option of every command says what it does in --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from engine.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_help() -> None:
    missing = [
        f"leadengine {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help and action.help.strip())
    ]
    assert missing == []


def test_every_subcommand_has_help() -> None:
    missing = [
        " ".join((*path, name))
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action._choices_actions
        for name in [choice.dest]
        if not (choice.help and choice.help.strip())
    ]
    assert missing == []


def test_generate_leads_and_seed_say_what_they_do() -> None:
    generate = dict(_parsers(build_parser()))[("generate",)]
    helps = {a.dest: a.help or "" for a in generate._actions}
    assert "leads" in helps["leads"] and "default" in helps["leads"]
    assert "seed" in helps["seed"] and "same" in helps["seed"]
