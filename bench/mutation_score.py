"""The mutation score per module, from the results `mutmut run` left in mutants/ (the .meta files).

killed: a test failed (or timed out) with the mutant in place; survived: every test passed;
no tests: no selected test runs that code. Score = killed / (killed + survived), per module and
overall. `--survivors` lists each surviving mutant (`mutmut show NAME` prints its diff).

Usage: python bench/mutation_score.py [--survivors] [--at-least 85]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
#: mutmut's exit codes by what they mean (mutmut/stats.py)
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in KILLED:
        return "killed"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    return "other"


def load(mutants: Path) -> dict[str, dict[str, str]]:
    """module path -> mutant name -> status."""
    out: dict[str, dict[str, str]] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(mutants))[: -len(".meta")]
        out[module] = {name: status(code) for name, code in codes.items()}
    return out


def score(counts: Counter[str]) -> float | None:
    tested = counts["killed"] + counts["survived"]
    return None if tested == 0 else 100 * counts["killed"] / tested


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    parser.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    parser.add_argument("--at-least", type=float, default=None, help="exit 1 below this score")
    args = parser.parse_args()
    results = load(args.mutants)
    if not results:
        print(f"no mutmut results in {args.mutants}: run `make mutate` first", file=sys.stderr)
        return 2
    table = Table(title="mutation score per module")
    for column in ("module", "mutants", "killed", "survived", "no tests", "other", "score"):
        table.add_column(column, justify="left" if column == "module" else "right", no_wrap=True)
    total: Counter[str] = Counter()
    for module, mutants in results.items():
        counts = Counter(mutants.values())
        total += counts
        s = score(counts)
        table.add_row(module, str(len(mutants)), str(counts["killed"]), str(counts["survived"]),
                      str(counts["no tests"]), str(counts["other"] + counts["not checked"]),
                      "-" if s is None else f"{s:.1f}%")  # fmt: skip
    overall = score(total)
    table.add_row("TOTAL", str(sum(total.values())), str(total["killed"]), str(total["survived"]),
                  str(total["no tests"]), str(total["other"] + total["not checked"]),
                  "-" if overall is None else f"{overall:.1f}%", style="bold")  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 120)  # whole names in a log
    console.print(table)
    if args.survivors:
        for module, mutants in results.items():
            for name, what in mutants.items():
                if what == "survived":
                    console.print(f"survived  {name}  ({module})")
    if args.at_least is not None and (overall or 0) < args.at_least:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
