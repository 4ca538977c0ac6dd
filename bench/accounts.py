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

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import (  # noqa: E402
    child_phase,
    database_url,
    end_to_end_rate,
    phase,
    phase_parser,
    projection_rate,
    write_events,
)

from engine.domain.generator import generate  # noqa: E402


def main() -> None:
    parser = phase_parser(__doc__, ["plain", "accounts"])
    args = parser.parse_args()
    if args.phase:
        child_phase(args)
        return
    url = database_url()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, with_accounts in (("plain", False), ("accounts", True)):
            events = generate(args.leads, args.seed, accounts=with_accounts)
            path = write_events(Path(tmp), name, events)
            del events
            results[name] = phase(__file__, name, url, path)
    p, a = results["plain"], results["accounts"]

    def rates(r: dict[str, float]) -> tuple[float, float]:
        return end_to_end_rate(r), projection_rate(r)

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
