"""As-of replay benchmark: `lead show KEY --as-of T` latency for leads with 10, 1,000 and
10,000 events, at random moments of their history (p50, p99), beside merely reading the lead's
stored rows (the least any replay must do), measured in the same run.

The work per call is what the CLI does: read the lead's events, keep those recorded by T, fold
them, score the result. Three ways, on the same leads and moments: `aggregate` (every event
decoded to an eventsourcing event and folded on the Lead aggregate: `asof.fold`), `lean`
(engine/services/asof_read.lead_as_of without snapshots: every row read and folded) and
`snapshots` (the same from the newest snapshot recorded by T, engine/postgres/snapshots.py:
what `lead show --as-of` does now; warmed by one read at each moment, oldest first, before
timing; the first of them, with no snapshot yet, is shown as `cold`). Each is timed with the
explained score (`as-of`), without a score (`fold only`: read, decode, fold) and with the
totals only (`show`: what `lead show` computes; `lead explain` needs every line), `show` also
in CPU time of this process (`cpu`: wall time on a loaded machine counts the waits for a
core). Uses LEADENGINE_DATABASE_URL (schema bench_replay) or the embedded server.
Usage: python bench/replay.py [--sizes 10,1000,10000] [--samples 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import peak_rss_mb  # noqa: E402

from engine.domain import asof  # noqa: E402
from engine.domain.contract import validate_event  # noqa: E402
from engine.postgres.db import drop_schema, resolve  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402
from engine.services.asof_read import lead_as_of  # noqa: E402
from engine.settings import get_settings  # noqa: E402

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)


def _aggregate(rt: Any, key: str, moment: datetime) -> Any:
    return asof.fold(asof.recorded_by(rt.app.lead_events(key), moment), key)


def _lean(rt: Any, key: str, moment: datetime) -> Any:
    return lead_as_of(rt.app, key, moment, snapshots=False)


def _snapshots(rt: Any, key: str, moment: datetime) -> Any:
    return lead_as_of(rt.app, key, moment)


WAYS: dict[str, Callable[[Any, str, datetime], Any]] = {
    "aggregate": _aggregate,
    "lean": _lean,
    "snapshots": _snapshots,
}


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
        cold: dict[str, float] = {}
        for n in sizes:  # snapshots: one read at each moment, oldest first, before timing
            key = f"replay-{n}"
            for i, moment in enumerate(stamps[key]):
                t0 = time.perf_counter()
                lead_as_of(rt.app, key, moment)
                if i == 0:
                    cold[key] = time.perf_counter() - t0
        print(
            f"{'events':>7} {'read rows':>10} {'way':>9} {'as-of p50':>10} {'as-of p99':>10} "
            f"{'x read':>7} {'x lean':>7} {'fold only p50':>14} {'p99':>8} {'show p50':>9} "
            f"{'p99':>8} {'show cpu p50':>12} {'p99':>8}"
        )
        for n in sizes:
            key = f"replay-{n}"
            reads: list[float] = []
            took: dict[str, list[float]] = {w: [] for w in WAYS}
            folds: dict[str, list[float]] = {w: [] for w in WAYS}
            shows: dict[str, list[float]] = {w: [] for w in WAYS}
            cpus: dict[str, list[float]] = {w: [] for w in WAYS}
            for _ in range(args.samples):
                moment = rng.choice(stamps[key])
                t0 = time.perf_counter()
                rows = rt.app.recorder.select_events(rt.app.lead_id(key))
                reads.append(time.perf_counter() - t0)
                assert len(rows) >= n
                scores = []
                for way in WAYS:  # all on the same moment, one after the other
                    lead = None  # the previous way's lead is freed before the clock starts
                    c0, t0 = time.process_time(), time.perf_counter()
                    lead = WAYS[way](rt, key, moment)
                    c1, t1 = time.process_time(), time.perf_counter()
                    scores.append(lead.current_score(rt.rules))
                    c2, t2 = time.process_time(), time.perf_counter()
                    totals = lead.current_score(rt.rules, explain=False)
                    t3, c3 = time.perf_counter(), time.process_time()
                    took[way].append(t2 - t0)
                    folds[way].append(t1 - t0)
                    shows[way].append(t1 - t0 + t3 - t2)
                    cpus[way].append(c1 - c0 + c3 - c2)
                    assert totals.total == scores[-1].total
                assert scores[0] == scores[1] == scores[2]  # the same lead every way
            r50 = statistics.median(reads)
            lean50 = statistics.median(took["lean"])
            for way in WAYS:
                a50, a99 = statistics.median(took[way]), pct(took[way], 0.99)
                f50, f99 = statistics.median(folds[way]), pct(folds[way], 0.99)
                s50, s99 = statistics.median(shows[way]), pct(shows[way], 0.99)
                u50, u99 = statistics.median(cpus[way]), pct(cpus[way], 0.99)
                print(
                    f"{n:7,} {r50 * 1000:7.1f} ms {way:>9} {a50 * 1000:7.1f} ms "
                    f"{a99 * 1000:7.1f} ms {a50 / r50:7.1f} {a50 / lean50:7.2f} "
                    f"{f50 * 1000:11.1f} ms {f99 * 1000:5.1f} ms {s50 * 1000:6.1f} ms "
                    f"{s99 * 1000:5.1f} ms {u50 * 1000:9.1f} ms {u99 * 1000:5.1f} ms"
                )
            ratio = statistics.median(took["lean"]) / statistics.median(took["aggregate"])
            snap = {w: statistics.median(shows[w]) for w in ("lean", "snapshots")}
            print(
                f"{'':7} lean / aggregate as-of p50: x{ratio:.2f}; snapshots / lean show p50: "
                f"x{snap['snapshots'] / snap['lean']:.2f} (p99 x"
                f"{pct(shows['snapshots'], 0.99) / pct(shows['lean'], 0.99):.2f}; cpu p50 x"
                f"{statistics.median(cpus['snapshots']) / statistics.median(cpus['lean']):.2f}); "
                f"cold first read {cold[key] * 1000:.1f} ms"
            )
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
