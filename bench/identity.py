"""Identity benchmark: ingest (store + projections) of a stream where a share of the leads
arrive under several keys (a cookie linked at the form fill, a duplicate merged later), against
the same journeys without identity events, measured in the same run (docs/identity.md).

Each phase runs in its own process (peak RSS its own) on its own schema. Usage:
  python bench/identity.py [--leads 3000] [--seed 1] [--share 0.2]
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

from engine.generator import generate, lines  # noqa: E402

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
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase, events in (("plain", plain), ("identity", stitched)):
            path = Path(tmp) / f"{phase}.jsonl"
            path.write_text("".join(lines(events)))
            results[phase] = run_phase(__file__, phase, ["--url", url, "--data", str(path)])
    p, i = results["plain"], results["identity"]
    print(
        f"leads {args.leads:,}: {len(joined):,} linked or merged "
        f"({len(joined) / args.leads:.0%}); events plain {p['events']:,}, "
        f"with identity {i['events']:,}"
    )
    for name, r in (("plain", p), ("identity", i)):
        store = r["events"] / r["store_s"]
        e2e = r["events"] / (r["store_s"] + r["project_s"])
        print(
            f"{name:9} store {store:9,.0f} events/s   end to end {e2e:9,.0f} events/s   "
            f"peak RSS {r['peak_rss_mb']:5.0f} MB"
        )
    ratio_store = (i["events"] / i["store_s"]) / (p["events"] / p["store_s"])
    ratio_e2e = (i["events"] / (i["store_s"] + i["project_s"])) / (
        p["events"] / (p["store_s"] + p["project_s"])
    )
    print(
        f"identity / plain: store x{ratio_store:.2f}, end to end x{ratio_e2e:.2f}, "
        f"peak RSS x{i['peak_rss_mb'] / p['peak_rss_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
