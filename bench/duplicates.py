"""Duplicate-rules benchmark: ingest (store + projections) of the same stream with no duplicate
rule (baseline), the default rule (same e-mail -> suggest) and a merge rule (same e-mail ->
merge), measured in the same run, phases alternated, each in its own process on its own schema
(docs/identity.md#duplicates). The stream is `generate --identity SHARE`: a share of the
journeys told as a cookie or a second lead with the same e-mail.

Usage:
  python bench/duplicates.py [--leads 2000] [--seed 1] [--share 0.2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, peak_rss_mb, run_phase  # noqa: E402

from engine.consumers.lines import ingest_lines  # noqa: E402
from engine.domain.generator import generate, lines  # noqa: E402
from engine.domain.rules import DuplicateRule, Identity, load_rules  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402
from engine.settings import Settings  # noqa: E402

PHASES = {
    "off": (),
    "suggest": (DuplicateRule(name="same-email", match="email", action="suggest"),),
    "merge": (DuplicateRule(name="same-email", match="email", action="merge"),),
}


def child(args: argparse.Namespace) -> None:
    data = Path(args.data).read_bytes().splitlines()
    rules = load_rules().model_copy(update={"identity": Identity(duplicates=PHASES[args.phase])})
    database = dbmod.from_url(args.url, f"bench_{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=args.url, database_schema=database.schema)  # type: ignore[arg-type]
    try:
        with open_runtime(settings, rules=rules, database=database) as rt:
            t0 = time.perf_counter()
            report = ingest_lines(
                data, origin="bench", app=rt.app, deadletters=rt.deadletters, batch_size=1000
            )
            t1 = time.perf_counter()
            rt.projector.run()
            t2 = time.perf_counter()
            with rt.db.connect() as conn:
                row = conn.execute(
                    f"SELECT count(*) FROM {database.schema}.duplicate_suggestions"
                ).fetchone()
        doc = {
            "events": report.accepted,
            "store_s": t1 - t0,
            "project_s": t2 - t1,
            "pairs": row[0] if row else 0,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        dbmod.drop_schema(database)
    print(json.dumps(doc))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--share", type=float, default=0.2, help="generate --identity share")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds (default 2)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args)
        return
    url = database_url()
    events = generate(args.leads, args.seed, identity=args.share)
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in PHASES}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(lines(events)))
        for _ in range(args.rounds):  # alternated: a busy machine slows every phase alike
            for phase in PHASES:
                runs[phase].append(run_phase(__file__, phase, ["--url", url, "--data", str(path)]))
    print(f"leads {args.leads:,}, events {runs['off'][0]['events']:,}; {args.rounds} rounds")
    for n in range(args.rounds):
        base = runs["off"][n]
        for phase in PHASES:
            r = runs[phase][n]
            print(
                f"round {n + 1} {phase:8} store {_store(r):7,.0f} ev/s  end to end "
                f"{_e2e(r):7,.0f} ev/s  pairs {r['pairs']:4.0f}  peak RSS "
                f"{r['peak_rss_mb']:4.0f} MB  / off: store x{_store(r) / _store(base):.2f}, "
                f"end to end x{_e2e(r) / _e2e(base):.2f}"
            )


def _store(r: dict[str, float]) -> float:
    return r["events"] / r["store_s"]


def _e2e(r: dict[str, float]) -> float:
    return r["events"] / (r["store_s"] + r["project_s"])


if __name__ == "__main__":
    main()
