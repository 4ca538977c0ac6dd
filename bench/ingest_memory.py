"""Ingest memory benchmark: peak RSS of `leadengine ingest FILE` for N and 2N events.

Each run is `python -m engine ingest FILE` in its own process on its own schema (its peak RSS
read with `os.wait4`; the file is written by another child, so the parent never holds the
events), then the same file again (every line a duplicate). Flat memory means 2N/N near 1.

The files are generated once (one generation of 2N events; the N file is its first N lines)
and kept in the temp directory, keyed by N, seed and the generator's source: a rerun with the
same N starts ingesting at once (--fresh-files writes them again).

Usage: python bench/ingest_memory.py [--events 60000] [--cache-size N] [--no-project]
       [--fresh-only] [--sizes n|2n|both]

--fresh-only skips the duplicates runs, --sizes runs one file only: at 350k events a full run
takes most of an hour on a loaded machine. Compare checkouts by running this file from each
(the files are shared through the temp dir; same N and seed, same events).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url  # noqa: E402

from engine.domain import generator  # noqa: E402
from engine.domain.generator import generate, lines  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402

#: events per generated journey, at the low end (about 10.7 with costs and accounts): one
#: generation is almost always enough (each takes about 70 s per 300k events on this machine)
EVENTS_PER_LEAD = 10


def cached_files(events: int, seed: int) -> dict[int, Path]:
    """Where the N and 2N files of this size, seed and generator live in the temp dir."""
    tag = hashlib.sha256(Path(generator.__file__).read_bytes()).hexdigest()[:12]
    base = Path(tempfile.gettempdir()) / "leadengine-bench-ingest"
    return {n: base / f"{n}-seed{seed}-{tag}.jsonl" for n in (events, 2 * events)}


def write_events(files: dict[int, Path], seed: int) -> None:
    """Both files from one generation of enough journeys for the larger one: the N file is
    the first N lines of the 2N file. Each is written to a temp name and renamed when complete."""
    most = max(files)
    leads = most // EVENTS_PER_LEAD + 1
    while True:
        generated = generate(leads, seed)
        if len(generated) >= most:
            break
        leads = leads * most // len(generated) + 1
    for n, path in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with partial.open("w") as out:
            out.writelines(lines(generated[:n]))
        partial.rename(path)


def run_ingest(path: Path, env: dict[str, str], no_project: bool) -> dict[str, float]:
    """One `leadengine ingest` child: its counts, wall time and peak RSS (MB)."""
    cmd = [sys.executable, "-m", "engine", "ingest", str(path), "--format", "json"]
    if no_project:
        cmd.append("--no-project")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here: its own rusage
        elapsed = time.perf_counter() - t0
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if code not in (0, 1):  # 1: done, some lines rejected
        sys.exit(f"ingest failed ({code}):\n{stderr[-4000:]}")
    doc = json.loads(stdout)
    return {"lines": doc["lines"], "seconds": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=60_000, help="N (the larger file is 2N)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-project", action="store_true", help="pass --no-project to ingest")
    parser.add_argument(
        "--cache-size", type=int, help="LEADENGINE_CACHE_SIZE for the runs (default: its default)"
    )
    parser.add_argument("--fresh-files", action="store_true", help="write the files again")
    parser.add_argument("--fresh-only", action="store_true", help="skip the duplicates runs")
    parser.add_argument("--sizes", choices=("n", "2n", "both"), default="both")
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = cached_files(args.events, args.seed)
    if args.write:
        write_events(files, args.seed)
        return
    if args.fresh_files or not all(path.exists() for path in files.values()):
        print(f"... writing {', '.join(map(str, files.values()))}", file=sys.stderr, flush=True)
        # written by a child: an `ingest` child's peak RSS counts its parent's pages at the
        # fork (Linux keeps the high-water mark across exec), so the parent stays small
        write = ["--write", "--events", str(args.events), "--seed", str(args.seed)]
        subprocess.run(
            [sys.executable, __file__, *write],
            check=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
    url = database_url()
    results: dict[tuple[int, str], dict[str, float]] = {}
    runs = ("fresh",) if args.fresh_only else ("fresh", "duplicates")
    sizes = {"n": [args.events], "2n": [2 * args.events], "both": list(files)}[args.sizes]
    with tempfile.TemporaryDirectory() as tmp:
        for n, path in ((n, files[n]) for n in sizes):
            schema = f"bench_mem_{uuid.uuid4().hex[:8]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADENGINE_")} | {
                "LEADENGINE_DATABASE_URL": url,
                "LEADENGINE_DATABASE_SCHEMA": schema,
                "LEADENGINE_HOME": str(Path(tmp) / f"home{n}"),
                "LEADENGINE_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            }
            if args.cache_size:
                env["LEADENGINE_CACHE_SIZE"] = str(args.cache_size)
            try:
                for run in runs:
                    print(f"... {n:,} events, {run}", file=sys.stderr, flush=True)
                    results[(n, run)] = run_ingest(path, env, args.no_project)
            finally:
                dbmod.drop_schema(dbmod.from_url(url, schema))
    project = "without" if args.no_project else "with"
    cache = args.cache_size or "default"
    print(
        f"leadengine ingest ({ROOT}), {project} projection, cache size {cache}; N = {args.events:,}"
    )
    for (n, run), r in results.items():
        print(
            f"{n:>9,} events  {run:<10}  {r['lines'] / r['seconds']:8,.0f} events/s  "
            f"{r['seconds']:7.1f} s   peak RSS {r['peak_rss_mb']:6.0f} MB"
        )
    for run in runs if args.sizes == "both" else ():
        small, big = results[(args.events, run)], results[(2 * args.events, run)]
        print(
            f"2N/N {run:<10}  peak RSS x{big['peak_rss_mb'] / small['peak_rss_mb']:.2f}   "
            f"events/s x{(big['lines'] / big['seconds']) / (small['lines'] / small['seconds']):.2f}"
        )


if __name__ == "__main__":
    main()
