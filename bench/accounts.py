"""Accounts benchmark: the cost of account roll-ups, as a ratio against the same stream without
accounts, measured in the same run.

Two phases, each in its own process on its own schema of the same PostgreSQL server (as
bench/ingest.py): the generated journeys of `--leads` leads without accounts (`generate(...,
accounts=False)`), and the same journeys with CRM accounts, `account` attributes and free-mail
leads (`accounts=True`, the default). Each is ingested in batches and projected; printed: events/s
end to end and of the projection alone, peak RSS, and with/without ratios.

Usage: python bench/accounts.py [--leads 3000] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, run_phase  # noqa: E402
from ingest import phase_engine  # noqa: E402

from engine.domain.generator import generate, lines  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", choices=["plain", "accounts"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        gc.set_threshold(100_000, 50, 100)
        print(json.dumps(phase_engine(args.url, Path(args.data).read_bytes().splitlines())))
        return
    url = database_url()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for phase, with_accounts in (("plain", False), ("accounts", True)):
            path = Path(tmp) / f"{phase}.jsonl"
            events = generate(args.leads, args.seed, accounts=with_accounts)
            path.write_text("".join(lines(events)))
            del events
            results[phase] = run_phase(__file__, phase, ["--url", url, "--data", str(path)])
    p, a = results["plain"], results["accounts"]

    def rates(r: dict[str, float]) -> tuple[float, float]:
        return r["events"] / (r["store_s"] + r["project_s"]), r["notifications"] / r["project_s"]

    (p_e2e, p_proj), (a_e2e, a_proj) = rates(p), rates(a)
    print(f"leads {args.leads:,}: events without accounts {p['events']:,}, with {a['events']:,}")
    print(
        f"without accounts  end to end {p_e2e:9,.0f} events/s   projection "
        f"{p_proj:9,.0f} notifications/s   peak RSS {p['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"with accounts     end to end {a_e2e:9,.0f} events/s   projection "
        f"{a_proj:9,.0f} notifications/s   peak RSS {a['peak_rss_mb']:6.0f} MB"
    )
    print(
        f"ratio (with/without): end to end x{a_e2e / p_e2e:.2f}, projection "
        f"x{a_proj / p_proj:.2f}, peak RSS x{a['peak_rss_mb'] / p['peak_rss_mb']:.2f}"
    )


if __name__ == "__main__":
    main()
