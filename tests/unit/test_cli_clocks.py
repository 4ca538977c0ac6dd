"""One meaning per flag (issue 14): --as-of is always "recorded by T", --occurred-by always
"happened by T", the two exclude each other, and every report takes --from/--to/--as-of."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from engine.cli.args import AS_OF_HELP, OCCURRED_BY_HELP
from engine.cli.main import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings}


PARSERS = dict(_parsers(build_parser()))
WITH_CLOCKS = sorted(path for path, p in PARSERS.items() if "--as-of" in _options(p))


def test_as_of_and_occurred_by_mean_one_thing_everywhere() -> None:
    helps = {
        (path, option): _options(PARSERS[path])[option].help
        for path in PARSERS
        for option in ("--as-of", "--occurred-by")
        if option in _options(PARSERS[path])
    }
    assert {h for (_, o), h in helps.items() if o == "--as-of"} == {AS_OF_HELP}
    assert {h for (_, o), h in helps.items() if o == "--occurred-by"} == {OCCURRED_BY_HELP}
    assert "recorded" in AS_OF_HELP and "happened" in OCCURRED_BY_HELP
    # the other clock is there wherever one is
    assert (
        sorted(p for p, parser in PARSERS.items() if "--occurred-by" in _options(parser))
        == WITH_CLOCKS
    )
    assert {("lead", "show"), ("lead", "history"), ("lead", "explain")} <= set(WITH_CLOCKS)


def test_every_report_takes_from_to_as_of_and_occurred_by() -> None:
    reports = [path for path in PARSERS if len(path) == 2 and path[0] == "report"]
    assert {r[1] for r in reports} >= {"funnel", "sla", "attribution", "kpis", "html"}
    for path in reports:
        options = _options(PARSERS[path])
        missing = {"--from", "--to", "--as-of", "--occurred-by"} - options.keys()
        assert not missing, (path, missing)


@pytest.mark.parametrize("path", WITH_CLOCKS)
def test_the_two_clocks_exclude_each_other(path: tuple[str, ...]) -> None:
    argv = [*path, *(["out.html"] if path[-1] == "html" else [])]
    argv += ["k"] if path[0] == "lead" else []
    parser = build_parser()
    both = [*argv, "--as-of", "2026-03-01", "--occurred-by", "2026-03-01"]
    with pytest.raises(SystemExit):
        parser.parse_args(both)
    args = parser.parse_args([*argv, "--occurred-by", "2026-03-01"])
    assert args.occurred_by == "2026-03-01" and args.as_of is None
