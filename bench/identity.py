"""Identity benchmark: ingest (store + projections) of a stream where a share of the leads
arrive under several keys (a cookie linked at the form fill, a duplicate merged later), against
the same journeys without identity events, measured in the same run (docs/identity.md).

Each phase runs in its own process (peak RSS its own) on its own schema. Usage:
  python bench/identity.py [--leads 3000] [--seed 1] [--share 0.2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, run_phase  # noqa: E402
from ingest import phase_engine  # noqa: E402

from engine.domain.generator import generate, lines  # noqa: E402

IDENTITY_TYPES = ("identity.linked", "lead.merged", "lead.unmerged")


def child(args: argparse.Namespace) -> None:
    data = Path(args.data).read_bytes().splitlines()
    print(json.dumps(phase_engine(args.url, data)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--share", type=float, default=0.2, help="share of all leads linked or merged"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds (default 2)")
    parser.add_argument("--phase", choices=["plain", "identity"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args)
        return
    url = database_url()
    plain = generate(args.leads, args.seed)
    # stitching applies to captured journeys (about 92%): ask for the share of those
    stitched = generate(args.leads, args.seed, identity=min(1.0, args.share / 0.92))
    joined = {e["subject"] for e in stitched if e["type"] in IDENTITY_TYPES}
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "identity": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for phase, events in (("plain", plain), ("identity", stitched)):
            paths[phase] = Path(tmp) / f"{phase}.jsonl"
            paths[phase].write_text("".join(lines(events)))
        for _ in range(args.rounds):  # alternated: a busy machine slows both alike
            for phase in ("plain", "identity"):
                runs[phase].append(
                    run_phase(__file__, phase, ["--url", url, "--data", str(paths[phase])])
                )
    print(
        f"leads {args.leads:,}: {len(joined):,} linked or merged "
        f"({len(joined) / args.leads:.0%}); events plain {runs['plain'][0]['events']:,}, "
        f"with identity {runs['identity'][0]['events']:,}; {args.rounds} alternated rounds"
    )
    for n, (p, i) in enumerate(zip(runs["plain"], runs["identity"], strict=True), 1):
        for name, r in (("plain", p), ("identity", i)):
            print(
                f"round {n} {name:9} store {_store(r):7,.0f} events/s   end to end "
                f"{_e2e(r):7,.0f} events/s   peak RSS {r['peak_rss_mb']:5.0f} MB"
            )
        print(
            f"round {n} identity / plain: store x{_store(i) / _store(p):.2f}, end to end "
            f"x{_e2e(i) / _e2e(p):.2f}, peak RSS x{i['peak_rss_mb'] / p['peak_rss_mb']:.2f}"
        )
    best = {k: max(v, key=_e2e) for k, v in runs.items()}
    print(
        f"best of each: end to end x{_e2e(best['identity']) / _e2e(best['plain']):.2f}, "
        f"store x{_store(best['identity']) / _store(best['plain']):.2f}"
    )


def _store(r: dict[str, float]) -> float:
    return r["events"] / r["store_s"]


def _e2e(r: dict[str, float]) -> float:
    return r["events"] / (r["store_s"] + r["project_s"])


if __name__ == "__main__":
    main()
