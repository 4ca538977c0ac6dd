"""The scale check of issue 21: `projections rebuild` of every projection (the default workers)
on the logs bench/scale_log.py made (with and without accounts), with wall time, events/s and
peak RSS per process and in total.

Each rebuild runs in a process of its own; a thread there samples /proc every 0.2 s for it
and every process under it (the rebuild's workers), keeping each one's peak resident memory
and the peak of their sum (ru_maxrss of the process itself is printed beside it as a check).

--baseline ROOT runs the same rebuilds with the engine of another checkout (e.g. `git worktree
add /tmp/base main`), in the same run, for the ratios (RSS and throughput, this tree / the
baseline). --projections picks projections (default all).

Usage: python bench/scale_rebuild.py --db t3scale_20000 [--db t3scale_5000 ...]
           [--baseline ROOT] [--projections leads] [--workers N]
(LEADENGINE_DATABASE_URL: the server holding <db>_plain and <db>_accounts; the logs are made
with `python bench/scale_log.py --accounts N --prefix <db>`.)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree(pid: int) -> list[int]:
    """`pid` and every process under it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return out


def _rss_mb(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


class Sampler(threading.Thread):
    """Peak RSS of this process, of each process under it, and of their sum."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peaks: dict[int, float] = {}
        self.total = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.2):
            total = 0.0
            for pid in _tree(me):
                rss = _rss_mb(pid)
                total += rss
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), rss)
            self.total = max(self.total, total)


def phase_rebuild(url: str, projections: list[str], workers: int | None) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from common import settings_for

    from engine.postgres import db as dbmod
    from engine.projections.projector import PROJECTIONS
    from engine.projections.rebuild import rebuild
    from engine.runtime import open_runtime

    sampler = Sampler()
    sampler.start()
    names = projections or list(PROJECTIONS)
    out: dict[str, Any] = {"projections": {}}
    with open_runtime(settings_for(url, "scale"), database=dbmod.from_url(url, "scale")) as rt:
        head = rt.app.recorder.max_notification_id() or 0
        t0 = time.perf_counter()
        for name in names:
            r = rebuild(rt.app, rt.db, name, workers=workers)
            out["projections"][name] = {"events": r.events, "seconds": r.total_seconds}
        out["seconds"] = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    me = os.getpid()
    out["head"] = head
    out["events"] = sum(p["events"] for p in out["projections"].values())
    out["main_mb"] = sampler.peaks.get(me, 0.0)
    out["worker_mb"] = max((v for k, v in sampler.peaks.items() if k != me), default=0.0)
    out["total_mb"] = sampler.total
    out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run(engine_root: Path, url: str, projections: list[str], workers: int | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(engine_root))
    cmd = [sys.executable, __file__, "--phase", "--url", url, "--engine-root", str(engine_root)]
    cmd += [*(["--projections", *projections] if projections else [])]
    cmd += [*(["--workers", str(workers)] if workers else [])]
    print(f"... rebuild {url} with {engine_root}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3 * 3600)
    if proc.returncode:
        sys.exit(f"rebuild failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def line(label: str, r: dict[str, Any]) -> str:
    return (
        f"  {label:<28}{r['head']:>10,} notifications  {r['seconds']:7.1f} s "
        f"({r['events'] / r['seconds']:6,.0f} events/s)  peak RSS main {r['main_mb']:6.0f} MB, "
        f"worker {r['worker_mb']:6.0f} MB, total {r['total_mb']:6.0f} MB "
        f"(ru_maxrss {r['ru_maxrss_mb']:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", nargs="+", default=[], help="scale_log.py prefixes")
    parser.add_argument("--baseline", type=Path, help="another checkout's root")
    parser.add_argument("--projections", nargs="*", default=[])
    parser.add_argument("--workers", type=int)
    parser.add_argument("--variants", nargs="+", default=["plain", "accounts"])
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--engine-root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, str(args.engine_root))
        print(json.dumps(phase_rebuild(args.url, args.projections, args.workers)))
        return
    from psycopg.conninfo import make_conninfo

    server = os.environ.get("LEADENGINE_DATABASE_URL")
    if not server:
        sys.exit("set LEADENGINE_DATABASE_URL")
    what = ", ".join(args.projections) or "every projection"
    print(f"projections rebuild ({what}), workers {args.workers or 'default'}")
    for prefix in args.db:
        results: dict[tuple[str, str], dict[str, Any]] = {}
        for variant in args.variants:
            url = make_conninfo(server, dbname=f"{prefix}_{variant}")
            roots = [("this tree", ROOT)]
            if args.baseline:
                roots.append(("baseline", args.baseline))
            for label, root in roots:
                r = run(root, url, args.projections, args.workers)
                results[(variant, label)] = r
                print(line(f"{prefix} {variant} {label}", r), flush=True)
            if args.baseline:
                a, b = results[(variant, "this tree")], results[(variant, "baseline")]
                main_ratio = a["main_mb"] / b["main_mb"]
                print(
                    f"  {'':<28}this tree / baseline: peak RSS main x{main_ratio:.2f}"
                    f", worker x{a['worker_mb'] / max(b['worker_mb'], 1):.2f}, total "
                    f"x{a['total_mb'] / b['total_mb']:.2f}; throughput "
                    f"x{(a['events'] / a['seconds']) / (b['events'] / b['seconds']):.2f}",
                    flush=True,
                )
        if ("plain", "this tree") in results and ("accounts", "this tree") in results:
            p, a = results[("plain", "this tree")], results[("accounts", "this tree")]
            print(
                f"  {'':<28}accounts / plain: throughput "
                f"x{(a['events'] / a['seconds']) / (p['events'] / p['seconds']):.2f}, "
                f"peak RSS total x{a['total_mb'] / p['total_mb']:.2f}, main "
                f"x{a['main_mb'] / p['main_mb']:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
