"""What every command module builds its parsers from: shared argument types, flags and texts.

Each module of engine/cli/commands has `register(sub)`: it adds its own subcommands and sets
each one's handler (`set_defaults(handler=...)`); a group shared by several modules (`lead`,
`report`, `deadletters`) is made once by `group`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeAlias, TypeVar

from engine.cli import failures
from engine.cli.output import FORMATS
from engine.domain.errors import echoed

_N = TypeVar("_N", int, float)

BOOTSTRAP_HELP = "host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"


class Parser(argparse.ArgumentParser):
    """Argument mistakes end like every other failure: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(failures.FAILED, f"{self.prog}: {message} (see {self.prog} --help)\n")


#: what `Parser.add_subparsers` returns (its class is private to argparse)
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"
Handler = Callable[[argparse.Namespace], int]


def _parsed(text: str, parse: Callable[[str], _N], expected: str) -> _N:
    """`text` as `parse` reads it; else refused naming what was `expected` and what was given."""
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {echoed(text)}") from None


#: the largest count an option takes: counts reach PostgreSQL as `LIMIT`s, a bigint there (a
#: larger one failed there as an unexpected error, `deadletters list --limit 10**20`)
MAX_COUNT = 2**63 - 1


def positive_int(text: str) -> int:
    number = _parsed(text, int, "a whole number")
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {number}")
    if number > MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_COUNT:,} (a PostgreSQL bigint), got {number}"
        )
    return number


def int_from(low: int, high: int, why: str = "") -> Callable[[str], int]:
    """The type of an N option taking `low` to `high` (a bound keeps a typo such as 10**12
    from trying to fill memory or disk); `why` says what the upper bound is for."""

    def number(text: str) -> int:
        n = _parsed(text, int, "a whole number")
        if not low <= n <= high:
            raise argparse.ArgumentTypeError(f"expected {low:,} to {high:,}{why}, got {n}")
        return n

    return number


#: the largest batch or page a --batch-size takes: its rows are held in memory at once, so a
#: bound keeps a typo (10**12) from trying to fill memory (`projections rebuild`, `relay`)
MAX_BATCH = 1_000_000


def batch_size(text: str) -> int:
    """A --batch-size: 1 to MAX_BATCH, refused naming the bound and why."""
    return int_from(1, MAX_BATCH, " (a batch is held in memory)")(text)


#: the longest wait a SECONDS option takes (a week): longer is a mistake, and past what the
#: platform's timers hold
MAX_SECONDS = 7 * 24 * 3600


def seconds(text: str) -> float:
    """A wait in seconds above 0 and at most a week (`nan` and `inf` refused)."""
    number = _parsed(text, float, "seconds")
    if not 0 < number <= MAX_SECONDS:  # also false for nan
        raise argparse.ArgumentTypeError(
            f"expected seconds above 0 and at most {MAX_SECONDS:,} (a week), got {text}"
        )
    return number


def share(text: str) -> float:
    """A share between 0 and 1 (`nan`, `inf` and numbers outside it refused)."""
    number = _parsed(text, float, "a share from 0 to 1")
    if not 0 <= number <= 1:  # also false for nan
        raise argparse.ArgumentTypeError(f"expected a share from 0 to 1, got {text}")
    return number


def output_file(text: str) -> Path:
    """A file to write: its directory must exist (checked before any work is done). An empty
    name would be the working directory, so it is refused as what it is."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    path = Path(text)
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {text}: directory {path.parent} does not exist; create it first"
        )
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: it is a directory")
    return path


def fmt(p: argparse.ArgumentParser, default: str = "table") -> None:
    p.add_argument(
        "--format", choices=FORMATS, default=default, help=f"output format (default {default})"
    )
    p.add_argument(
        "--wide",
        action="store_true",
        help="tables: every column at full width (default: fit the terminal, 100 columns "
        "when not a terminal; columns that do not fit are named below the table)",
    )


@dataclass
class Commands:
    """The top-level subcommands, and the groups of subcommands (`lead`, `report`, ...) that
    several command modules add to: a group is made by the first module that asks for it.

    With `only`, only that command is added; a module's other commands get parsers of their
    own that nothing parses into (engine/cli/main.py lists them without their modules)."""

    sub: Subparsers
    only: str | None = None
    groups: dict[str, Subparsers] = field(default_factory=dict)

    def add(self, name: str, **kwargs: Any) -> Parser:
        if self.only is not None and name != self.only:
            kwargs.pop("help", None)
            return Parser(prog=name, **kwargs)
        return self.sub.add_parser(name, **kwargs)

    def group(self, name: str, help: str, dest: str, metavar: str = "SUBCOMMAND") -> Subparsers:
        if name not in self.groups:
            parser = self.add(name, help=help)
            self.groups[name] = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
        return self.groups[name]


def handles(p: argparse.ArgumentParser, handler: Handler) -> argparse.ArgumentParser:
    """`p` runs `handler` (engine/cli/main.py calls `args.handler(args)`)."""
    p.set_defaults(handler=handler)
    return p


CLOCKS_HELP = """\
clocks (docs/reports.md#flags-and-their-clocks): --as-of T = what the engine had recorded by T
(each stored event's own timestamp: what an auditor saw then); --occurred-by T = what had
happened by T (upstream `time`), as known now, late facts included. Pick one.
"""

WINDOW_HELP = (
    """\
windows: --from/--to cut on when things happened (the event's `time`). All take RFC 3339
timestamps or dates (UTC), e.g. --from 2026-01-01 --to 2026-04-01 --as-of 2026-04-02T09:00:00Z.
"""
    + CLOCKS_HELP
)

#: One meaning per flag: every command that takes --as-of / --occurred-by uses these texts.
AS_OF_HELP = "what the engine had recorded by T (events stored by then; default: everything)"
OCCURRED_BY_HELP = "what had happened by T (upstream `time`, late facts included)"


def clock_args(p: argparse.ArgumentParser) -> None:
    clocks = p.add_mutually_exclusive_group()
    clocks.add_argument("--as-of", metavar="T", help=AS_OF_HELP)
    clocks.add_argument("--occurred-by", metavar="T", help=OCCURRED_BY_HELP)


def window_args(p: argparse.ArgumentParser, *, currency: bool = True) -> None:
    p.add_argument(
        "--from", dest="start", metavar="T", help="things that happened from T (inclusive)"
    )
    p.add_argument("--to", dest="end", metavar="T", help="things that happened before T")
    clock_args(p)
    if currency:
        p.add_argument(
            "--currency",
            help="ISO 4217 code money is reported in (default: rules' money.reporting_currency); "
            "other currencies are converted with money.rates or left out and reported",
        )
