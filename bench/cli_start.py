"""CLI start-up benchmark: the wall time of `python -m engine --version`, `--help` and
`lead show --help` (a command: its own modules imported, the others not).

Each run is a fresh interpreter (what a user or a cron job pays per call). With `--against DIR`
(e.g. `git -C /work/main archive main | tar -x -C DIR`) the same commands run on that checkout's
engine too, alternated run by run so a change in the machine's load hits both alike; the line
`x...` is that checkout's median over this one's (above 1: this one starts faster).

Usage: python bench/cli_start.py [--runs 15] [--against DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--version"], ["--help"], ["lead", "show", "--help"])


def once(tree: Path, argv: list[str]) -> float:
    """Seconds for one `python -m engine ARGV` whose engine is imported from `tree`."""
    env = os.environ | {"PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "engine", *argv],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per command and tree")
    parser.add_argument("--against", type=Path, help="a baseline checkout to compare with")
    args = parser.parse_args()
    trees = {"this": ROOT} | ({"against": args.against} if args.against else {})
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; runs {args.runs}")
    for argv in COMMANDS:
        times: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():  # alternated: both see the same load
                times[name].append(once(tree, argv))
        medians = {name: statistics.median(t) for name, t in times.items()}
        line = " ".join(f"{name} {m * 1000:.0f} ms" for name, m in medians.items())
        if args.against:
            line += f"  x{medians['against'] / medians['this']:.1f}"
        print(f"engine {' '.join(argv)}: median {line}")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
