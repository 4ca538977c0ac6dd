"""As-of replay benchmark: `lead show KEY --as-of T` latency for leads with 10, 1,000 and
10,000 events, at random moments of their history (p50, p99), beside merely reading the lead's
stored rows (the least any replay must do), measured in the same run.

The work per call is what the CLI does: read the lead's events, keep those recorded by T, fold
them, score the result. Uses LEADENGINE_DATABASE_URL (schema bench_replay) or the embedded
server. Usage: python bench/replay.py [--sizes 10,1000,10000] [--samples 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import peak_rss_mb  # noqa: E402

from engine.domain import asof  # noqa: E402
from engine.domain.contract import validate_event  # noqa: E402
from engine.postgres.db import drop_schema, resolve  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402
from engine.settings import get_settings  # noqa: E402

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def lead_events(key: str, n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {
            "specversion": "1.0",
            "id": f"{key}-0",
            "source": "bench",
            "type": "lead.captured",
            "subject": key,
            "time": T0.isoformat(),
            "data": {"email": f"{key}@example.com"},
        }
    ]
    for i in range(1, n):
        out.append(
            {
                "specversion": "1.0",
                "id": f"{key}-{i}",
                "source": "bench",
                "type": "touch.page_viewed",
                "subject": key,
                "time": (T0 + timedelta(minutes=7 * i)).isoformat(),
                "data": {"channel": "web", "url": f"/p/{i % 50}"},
            }
        )
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = get_settings()
    db = dataclasses.replace(resolve(settings), schema="bench_replay")
    drop_schema(db)
    rng = random.Random(7)
    with open_runtime(settings, database=db) as rt:
        stamps: dict[str, list[datetime]] = {}
        for n in sizes:
            key = f"replay-{n}"
            events = [validate_event(e) for e in lead_events(key, n)]
            stamps[key] = []
            for start in range(0, n, 500):  # many transactions: recorded times spread out
                rt.app.ingest(events[start : start + 500])
                stamps[key].append(datetime.now(UTC))
        print(
            f"{'events':>7} {'read rows p50':>14} {'as-of p50':>10} {'as-of p99':>10} {'x read':>7}"
        )
        for n in sizes:
            key = f"replay-{n}"
            reads, replays = [], []
            for _ in range(args.samples):
                moment = rng.choice(stamps[key])
                t0 = time.perf_counter()
                rows = rt.app.recorder.select_events(rt.app.lead_id(key))
                reads.append(time.perf_counter() - t0)
                assert len(rows) >= n
                t0 = time.perf_counter()
                lead = asof.fold(asof.recorded_by(rt.app.lead_events(key), moment), key)
                lead.current_score(rt.rules)
                replays.append(time.perf_counter() - t0)
            r50, a50, a99 = statistics.median(reads), statistics.median(replays), pct(replays, 0.99)
            print(
                f"{n:7,} {r50 * 1000:11.1f} ms {a50 * 1000:7.1f} ms {a99 * 1000:7.1f} ms "
                f"{a50 / r50:7.1f}"
            )
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
