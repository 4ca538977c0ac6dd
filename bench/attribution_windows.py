"""Attribution-by-window refresh benchmark: what `projections refresh-attribution` costs when
a few leads changed, against recomputing every window, both measured in the same run.

  full         every window (all time, each month, each quarter; by channel and campaign,
               conversions and revenue; nine models): the baseline, what a refresh that did not
               know which windows changed would do each time
  read         read every journey (engine.analytics.load): the floor both pay once
  incremental  one late touch on one converted lead, projected, then a refresh: only its
               lead's months, their quarters and `all`

Rounds alternate full and incremental (a busy machine slows both alike); the ratio is
incremental / full seconds of the same round. Both read every journey once (the shared floor),
so the ratio shows what limiting the windows saves, not the read. The log is made once per
--leads/--seed in schema bench_windows_<leads>_<seed> and kept (--fresh makes it again).
Uses LEADENGINE_DATABASE_URL, else an embedded server.

Usage: python bench/attribution_windows.py [--leads 3000] [--seed 7] [--rounds 3] [--fresh]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, settings_for  # noqa: E402
from psycopg import sql  # noqa: E402

from engine.analytics import windows  # noqa: E402
from engine.analytics.load import load  # noqa: E402
from engine.domain.contract import parse_event, validate_event  # noqa: E402
from engine.domain.generator import generate, lines  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.runtime import Runtime, open_runtime  # noqa: E402


def late_touch(rt: Runtime, n: int) -> None:
    """A paid-social click half a day before the n-th customer's conversion, projected."""
    with rt.db.connect() as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT lead_key, customer_at FROM {} WHERE customer_at IS NOT NULL "
                "ORDER BY lead_key OFFSET %s LIMIT 1"
            ).format(sql.Identifier(rt.db.schema, "lead_state")),
            (n,),
        ).fetchone()
    assert row is not None, "no customer to touch"
    key, at = row
    event = {
        "specversion": "1.0",
        "id": f"bench-late-{n}-{time.time_ns()}",
        "source": "urn:bench",
        "type": "touch.ad_clicked",
        "subject": key,
        "time": (at - timedelta(hours=12)).isoformat(),
        "data": {"channel": "paid_social", "campaign": "bench-late"},
    }
    rt.app.ingest([validate_event(event)])
    rt.projector.run(until_caught_up=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    url = database_url()
    schema = f"bench_windows_{args.leads}_{args.seed}"
    database = dbmod.from_url(url, schema)
    if args.fresh:
        dbmod.drop_schema(database)
    with open_runtime(settings_for(url, schema), database=database) as rt:
        if not (rt.app.recorder.max_notification_id() or 0):
            events = [parse_event(x.encode()) for x in lines(generate(args.leads, args.seed))]
            print(f"making the log: {len(events):,} events ...", file=sys.stderr)
            for i in range(0, len(events), 2000):
                rt.app.ingest(events[i : i + 2000])
        rt.projector.run(until_caught_up=True)
        print(f"leads {args.leads:,}, seed {args.seed}, {args.rounds} alternated rounds")
        for n in range(args.rounds):
            started = time.perf_counter()
            load(rt.db)
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            full = windows.refresh(rt.db, rt.rules, full=True)
            full_s = time.perf_counter() - started
            late_touch(rt, n)
            started = time.perf_counter()
            part = windows.refresh(rt.db, rt.rules)
            part_s = time.perf_counter() - started
            print(
                f"round {n + 1}: read {read_s:5.2f} s   full {len(full.windows)} windows "
                f"{full.rows:,} rows {full_s:6.2f} s   incremental {len(part.windows)} windows "
                f"{part.rows:,} rows {part_s:6.2f} s   incremental / full x{part_s / full_s:.2f}"
                f"   beyond the read x{(part_s - read_s) / (full_s - read_s):.2f}"
            )


if __name__ == "__main__":
    main()
