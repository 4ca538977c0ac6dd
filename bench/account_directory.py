"""Account directory benchmark: the cost of writing batches of account updates' directory
rows (engine/postgres/account_directory.py `write`: the upserts and the provisional/CRM
claim check) as the recorder runs it (pipeline mode, one transaction a batch), on a
directory already holding `--accounts` rows.

Each tree runs in its own process on its own schema of the same PostgreSQL server
(LEADENGINE_DATABASE_URL): this tree, and with --baseline ROOT another checkout's engine
(e.g. `git worktree add /tmp/base <commit>`), in the same run; printed: seconds for the
timed batches of each and this tree / baseline. Batches default to 500 rows: the size every
tree can write (before the claim check had its own cursor, a few thousand rows in one batch
could fail).

Usage: python bench/account_directory.py [--accounts 10000] [--batches 4] [--batch 500]
       [--baseline ROOT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(start: int, count: int, at: datetime) -> list[tuple[object, ...]]:
    return [
        (f"acct-{i}", f"Co {i % 50} Inc.", f"co {i % 50} inc", [f"d{i}.ex.com"], None, None, at)
        for i in range(start, start + count)
    ]


def phase(url: str, accounts: int, batches: int, batch: int) -> dict[str, float]:
    """Fill the directory (untimed, in `batch`-row saves), then time `batches` more saves of
    new accounts: what one ingest batch of account updates adds to the save."""
    import psycopg

    from engine.postgres import account_directory

    schema = f"bench_dir_{uuid.uuid4().hex[:8]}"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        account_directory.create(conn, schema)

    def save(rows: list[tuple[object, ...]]) -> None:
        with (
            psycopg.connect(url) as conn,
            conn.pipeline(),
            conn.transaction(),
            conn.cursor() as cur,
        ):
            account_directory.write(cur, schema, rows)  # type: ignore[arg-type]

    try:
        for start in range(0, accounts, batch):
            save(_rows(start, min(batch, accounts - start), at))
        t0 = time.perf_counter()
        for b in range(batches):
            save(_rows(accounts + b * batch, batch, at))
        return {"seconds": time.perf_counter() - t0}
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--baseline", type=Path, help="another checkout's root")
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = os.environ.get("LEADENGINE_DATABASE_URL")
    if not url:
        sys.exit("set LEADENGINE_DATABASE_URL")
    if args.phase:
        print(json.dumps(phase(url, args.accounts, args.batches, args.batch)))
        return
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    results = {}
    for label, root in trees:
        out = subprocess.run(
            [sys.executable, __file__, "--phase", "--accounts", str(args.accounts),
             "--batches", str(args.batches), "--batch", str(args.batch)],
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        results[label] = json.loads(out.splitlines()[-1])
        print(
            f"{label:<10} {args.accounts:,} accounts, {args.batches} saves of {args.batch} rows: "
            f"{results[label]['seconds']:8.2f} s",
            flush=True,
        )
    if args.baseline:
        ratio = results["this tree"]["seconds"] / results["baseline"]["seconds"]
        print(f"this tree / baseline: x{ratio:.3f}")


if __name__ == "__main__":
    main()
