"""Identity benchmark: ingest (store + projections) of a stream where a share of the leads
arrive under several keys (a cookie linked at the form fill, a duplicate merged later), against
the same journeys without identity events, measured in the same run (docs/identity.md).

Each phase runs in its own process (peak RSS its own) on its own schema. Usage:
  python bench/identity.py [--leads 3000] [--seed 1] [--share 0.2] [--rounds 2]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    child_phase,
    database_url,
    end_to_end_rate,
    phase,
    phase_parser,
    store_rate,
    write_events,
)

from engine.domain.generator import generate  # noqa: E402

IDENTITY_TYPES = ("identity.linked", "lead.merged", "lead.unmerged")


def main() -> None:
    parser = phase_parser(__doc__, ["plain", "identity"])
    parser.add_argument(
        "--share", type=float, default=0.2, help="share of all leads linked or merged"
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds (default 2)")
    args = parser.parse_args()
    if args.phase:
        child_phase(args)
        return
    url = database_url()
    plain = generate(args.leads, args.seed)
    # stitching applies to captured journeys (about 92%): ask for the share of those
    stitched = generate(args.leads, args.seed, identity=min(1.0, args.share / 0.92))
    joined = {e["subject"] for e in stitched if e["type"] in IDENTITY_TYPES}
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "identity": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "plain": write_events(Path(tmp), "plain", plain),
            "identity": write_events(Path(tmp), "identity", stitched),
        }
        for _ in range(args.rounds):  # alternated: a busy machine slows both alike
            for name, path in paths.items():
                runs[name].append(phase(__file__, name, url, path))
    print(
        f"leads {args.leads:,}: {len(joined):,} linked or merged "
        f"({len(joined) / args.leads:.0%}); events plain {runs['plain'][0]['events']:,}, "
        f"with identity {runs['identity'][0]['events']:,}; {args.rounds} alternated rounds"
    )
    for n, (p, i) in enumerate(zip(runs["plain"], runs["identity"], strict=True), 1):
        for name, r in (("plain", p), ("identity", i)):
            print(
                f"round {n} {name:9} store {store_rate(r):7,.0f} events/s   end to end "
                f"{end_to_end_rate(r):7,.0f} events/s   peak RSS {r['peak_rss_mb']:5.0f} MB"
            )
        print(
            f"round {n} identity / plain: store x{ratio(store_rate, i, p):.2f}, end to end "
            f"x{ratio(end_to_end_rate, i, p):.2f}, peak RSS "
            f"x{i['peak_rss_mb'] / p['peak_rss_mb']:.2f}"
        )
    best_i, best_p = (max(runs[k], key=end_to_end_rate) for k in ("identity", "plain"))
    print(
        f"best of each: end to end x{ratio(end_to_end_rate, best_i, best_p):.2f}, "
        f"store x{ratio(store_rate, best_i, best_p):.2f}"
    )


Phase = dict[str, float]


def ratio(rate: Callable[[Phase], float], a: Phase, b: Phase) -> float:
    """`rate` of phase result `a` over that of `b`."""
    return rate(a) / rate(b)

if __name__ == "__main__":
    main()
