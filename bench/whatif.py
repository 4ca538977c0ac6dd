"""What-if benchmark: fold ~1M lead facts under the current and a new rule set.

The facts are generated in memory (the store is not involved: reading the log is measured by
bench/ingest.py; this measures the fold itself). Two phases, each in its own process so peak
RSS is its own:

  baseline  read every fact and group it by lead (the least any replay must do)
  whatif    engine.domain.whatif.replay: every fact recorded on two in-memory leads, current rules
            and new rules (MQL at 40 instead of 50), plus the summary

With `--against DIR` the what-if phase runs a third time on the engine of another checkout
(e.g. `git archive main | tar -x -C DIR`), on the same facts in the same run, and the line
`x... against DIR` is this checkout's rate over that one's.

`--workers N` sets the what-if's worker processes (default: the engine's own choice, one per
CPU up to 4); `--workers 1` measures the fold alone, and with `--against` also prints both
phases' CPU time rates (what a loaded machine's wall time hides).

Usage: python bench/whatif.py [--events 1000000] [--seed 3] [--workers N] [--against DIR]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: where `engine` is imported from: this checkout, or the `--against` one in that phase
ENGINE_ROOT = os.environ.get("LEADENGINE_BENCH_ENGINE", str(ROOT))
sys.path.insert(0, ENGINE_ROOT)

from common import peak_rss_mb, run_phase  # noqa: E402

from engine.domain.contract import validate_event  # noqa: E402
from engine.domain.generator import generate  # noqa: E402
from engine.domain.rules import load_rules, parse_rules  # noqa: E402
from engine.domain.whatif import FactIn, replay  # noqa: E402

EVENTS_PER_LEAD = 13.6  # what the generator averages


def facts(events: int, seed: int) -> list[FactIn]:
    out = []
    for raw in generate(max(1, int(events / EVENTS_PER_LEAD)), seed):
        env = validate_event(raw)
        if env.is_lead_event:
            out.append(
                FactIn(env.subject, env.id, env.type, env.source, env.occurred_at, dict(env.data))
            )
    return out


def phase(name: str, args: argparse.Namespace) -> dict[str, Any]:
    data = facts(args.events, args.seed)
    gc.collect()
    gc.set_threshold(100_000, 50, 100)
    base_rss = peak_rss_mb()
    t0, cpu0 = time.perf_counter(), time.process_time()
    if name == "baseline":
        leads: dict[str, list[FactIn]] = {}
        for fact in data:
            leads.setdefault(fact.lead_key, []).append(fact)
        summary: dict[str, Any] = {"leads": len(leads)}
    else:
        current = load_rules()
        text = (ROOT / "engine" / "default_rules.yaml").read_text()
        new = parse_rules(
            text.replace("total_at_least: 50", "total_at_least: 40").replace(
                'version: "2026.1"', 'version: "bench"', 1
            )
        )
        # worker processes where the engine has them (`--against` may be an older checkout)
        takes = "workers" in inspect.signature(replay).parameters
        kwargs: dict[str, Any] = {"workers": args.workers or None} if takes else {}
        summary = replay(data, current, new, **kwargs).summary(limit=0)
    seconds = time.perf_counter() - t0
    return {
        "facts": len(data),
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu0,  # this process's (not its workers')
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_mb": base_rss,
        "summary": {k: summary.get(k) for k in ("leads", "mql_old", "mql_new", "leads_changed")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare the fold with")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="what-if worker processes (default 0: the engine's own choice)",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args)))
        return
    argv = ["--events", str(args.events), "--seed", str(args.seed), "--workers", str(args.workers)]
    results = {name: run_phase(__file__, name, argv) for name in ("baseline", "whatif")}
    if args.against:
        env = {**os.environ, "LEADENGINE_BENCH_ENGINE": str(args.against.resolve())}
        results["against"] = run_phase(__file__, "whatif", argv, env=env)
    base, what = results["baseline"], results["whatif"]
    base_rate = base["facts"] / base["seconds"]
    rate = what["facts"] / what["seconds"]
    print(f"{what['facts']:,} lead facts of {what['summary']['leads']:,} leads")
    print(
        f"baseline (read + group)  {base_rate:12,.0f} facts/s   peak RSS "
        f"{base['peak_rss_mb']:7,.0f} MB"
    )
    rss_ratio = what["peak_rss_mb"] / base["peak_rss_mb"]
    print(
        f"what-if fold (2 rule sets) {rate:10,.0f} facts/s   x{rate / base_rate:.4f} baseline"
        f"   peak RSS {what['peak_rss_mb']:7,.0f} MB (x{rss_ratio:.2f})"
    )
    print(
        f"what-if took {what['seconds']:.1f} s; MQL {what['summary']['mql_old']:,} -> "
        f"{what['summary']['mql_new']:,}, {what['summary']['leads_changed']:,} leads change"
    )
    other = results.get("against")
    if other:
        other_rate = other["facts"] / other["seconds"]
        rss = what["peak_rss_mb"] / other["peak_rss_mb"]
        print(
            f"what-if fold of {args.against} {other_rate:,.0f} facts/s: this checkout "
            f"x{rate / other_rate:.2f} of it, peak RSS x{rss:.2f}"
            f"; same outcome: {other['summary'] == what['summary']}"
        )
        if args.workers == 1:  # all the fold in the phase's process: its CPU time is the fold's
            cpu, other_cpu = what["cpu_seconds"], other["cpu_seconds"]
            print(
                f"CPU time (one process each, load-independent): {what['facts'] / cpu:,.0f} "
                f"facts/s against {other['facts'] / other_cpu:,.0f} (x{other_cpu / cpu:.2f})"
            )


if __name__ == "__main__":
    main()
