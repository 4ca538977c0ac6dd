"""Report benchmark: every attribution model and every KPI over ~100,000 leads / ~1M events.

The read model is filled once per run from the generator's journeys: touches and sales facts as
the projector writes them, stage moves from engine.lifecycle (plus an MQL move where a lead
went on to sales; scoring itself is benchmarked by bench/whatif.py), costs as recorded. Then
each phase runs in its own process, so its peak RSS is its own:

  baseline  read every touchpoint row from PostgreSQL (the least any report must do)
  load      engine.analytics.load: touches, moves, milestones, costs -> journeys
  models    load + all nine attribution models by channel, and by campaign
  streamed  the same credits, paths read person by person from one streamed query
            (engine.analytics.pathread) into one pass of every model by both groupings
            (report.attribution_streamed: what `report attribution` runs)
  kpis      load + every KPI section (funnel ... money with attributed revenue)
  streamed-kpis  the same KPI document, each person's rows read as arrays from one query
            (engine.analytics.kpiread; report.kpis_streamed: what `report kpis` runs)
  funnel    load + `report funnel` of the leads created in a window (funnel.snapshot)
  streamed-funnel  the same document from the same query (kpiread.feed_funnel;
            report.funnel_streamed: what `report funnel --from/--to` runs)

The models and streamed phases must give the same credits, the kpis and streamed-kpis phases
the same document, the funnel phases the same document (their digests are compared).

Uses LEADENGINE_DATABASE_URL (schema bench_report) or the embedded server.
Usage: python bench/report.py [--leads 100000] [--seed 3] [--reuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import peak_rss_mb  # noqa: E402

from engine.analytics import report  # noqa: E402
from engine.analytics.attribution import MODELS  # noqa: E402
from engine.analytics.funnel import snapshot  # noqa: E402
from engine.analytics.load import count_touchpoints, load  # noqa: E402
from engine.analytics.report import Window  # noqa: E402
from engine.cli.output import to_json  # noqa: E402
from engine.domain import lifecycle  # noqa: E402
from engine.domain.generator import generate  # noqa: E402
from engine.domain.leadids import legacy_lead_id as lead_id  # noqa: E402  (any stable id will do)
from engine.domain.rules import load_rules  # noqa: E402
from engine.postgres import migrations  # noqa: E402
from engine.postgres.db import Database, drop_schema, ensure_schema, resolve  # noqa: E402
from engine.projections import rows  # noqa: E402
from engine.settings import get_settings  # noqa: E402

SCHEMA = "bench_report"
#: `report funnel --from/--to` over the generator's whole span (every lead created in it)
FUNNEL_WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def database() -> Database:
    return dataclasses.replace(resolve(get_settings()), schema=SCHEMA)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def read_model_rows(leads: int, seed: int) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {"touch": [], "stage": [], "milestone": [], "cost": []}
    by_lead: dict[str, list[dict[str, Any]]] = {}
    now = datetime.now().astimezone()
    seen: set[str] = set()
    for position, e in enumerate(generate(leads, seed), 1):
        if e["id"] in seen:
            continue  # the generator redelivers a few, as upstream does; the engine dedupes
        seen.add(e["id"])
        if e["type"] == "campaign.cost_recorded":
            d = e["data"]
            out["cost"].append(
                (
                    e["id"],
                    d["campaign"],
                    d["channel"],
                    Decimal(d["amount"]),
                    d["currency"],
                    d["period_start"],
                    d["period_end"],
                    now,
                    e["source"],
                )
            )
        elif e["type"] != "rep.availability_changed":
            by_lead.setdefault(e["subject"], []).append({**e, "position": position})
    for key, events in by_lead.items():
        uid: UUID = lead_id(key)
        events.sort(key=lambda e: (e["time"], e["position"]))
        stage, version, went_to_sales = (
            "anonymous",
            0,
            any(e["type"] in ("sales.accepted", "sales.qualified") for e in events),
        )
        touches_since_capture = 0
        for e in events:
            at, d, t = _at(e["time"]), e["data"], e["type"]
            if t.startswith("touch."):
                out["touch"].append(
                    (
                        uid,
                        e["id"],
                        key,
                        t,
                        d["channel"],
                        d.get("campaign"),
                        d.get("content"),
                        d.get("url"),
                        at,
                        now,
                        e["position"],
                        d.get("rep"),
                        e["source"],
                    )
                )
                touches_since_capture += stage != "anonymous"
                if went_to_sales and stage == "lead" and touches_since_capture >= 2:
                    version += 1
                    out["stage"].append(
                        (
                            uid,
                            version,
                            key,
                            stage,
                            "mql",
                            "score",
                            e["id"],
                            "bench",
                            None,
                            at,
                            now,
                            None,
                        )
                    )
                    stage = "mql"
                continue
            if t in rows.MILESTONE_TYPES:
                amount = d.get("amount")
                out["milestone"].append(
                    (
                        uid,
                        e["id"],
                        key,
                        t,
                        d.get("rep") or d.get("owner"),
                        d.get("reason"),
                        Decimal(amount) if amount else None,
                        d.get("currency"),
                        at,
                        now,
                        e["position"],
                        e["source"],
                    )
                )
            move = lifecycle.next_stage(stage, t, d)
            if isinstance(move, lifecycle.Move):
                version += 1
                out["stage"].append(
                    (
                        uid,
                        version,
                        key,
                        stage,
                        move.to,
                        move.reason,
                        e["id"],
                        None,
                        None,
                        at,
                        now,
                        None,
                    )
                )
                stage = move.to
    return out


COPY = {
    "touch": ("lead_touchpoints", rows.TOUCH_COLUMNS),
    "stage": ("lead_stage_history", rows.STAGE_HISTORY_COLUMNS),
    "milestone": ("lead_milestones", rows.MILESTONE_COLUMNS),
    "cost": ("campaign_costs", rows.COST_COLUMNS),
}


def populate(db: Database, leads: int, seed: int) -> dict[str, int]:
    drop_schema(db)
    ensure_schema(db)
    migrations.migrate(db)
    data = read_model_rows(leads, seed)
    with db.connect() as conn, conn.transaction(), conn.cursor() as cur:
        for name, (table, columns) in COPY.items():
            with cur.copy(f'COPY "{SCHEMA}".{table} ({", ".join(columns)}) FROM STDIN') as copy:
                for row in data[name]:
                    copy.write_row(row)
        for table, _ in COPY.values():  # as autovacuum would (a server may run without it)
            cur.execute(f'ANALYZE "{SCHEMA}".{table}')
    return {name: len(v) for name, v in data.items()}


def digest(results: dict[str, list[Any]]) -> str:
    """Every model's credits by every grouping, as one hash (two phases must agree)."""
    doc = {
        by: [[r.model, sorted((k, str(v)) for k, v in r.credits.items())] for r in rs]
        for by, rs in results.items()
    }
    text = json.dumps(doc)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def phase(name: str) -> dict[str, Any]:
    db = database()
    rules = load_rules()
    gc.collect()
    gc.set_threshold(100_000, 50, 100)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if name == "baseline":
        extra["rows"] = count_touchpoints(db)
    elif name == "streamed":
        by_grouping = report.attribution_streamed(db, rules, Window(), bys=("channel", "campaign"))
        extra["credits"] = digest(by_grouping)
        extra["conversions_channel"] = by_grouping["channel"][0].conversions
        assert all(sum(r.credits.values()) == r.conversions for r in by_grouping["channel"])
    elif name == "streamed-funnel":
        doc = report.funnel_streamed(db, FUNNEL_WINDOW)
        extra["document"] = hashlib.sha256(to_json(doc).encode()).hexdigest()[:16]
    elif name == "streamed-kpis":
        doc = report.kpis_streamed(db, rules, Window())
        extra["customers"] = doc["cycle"][0]["customers"]
        extra["document"] = hashlib.sha256(to_json(doc).encode()).hexdigest()[:16]
    else:
        ds = load(db)
        extra["leads"] = len(ds.journeys)
        extra["rows"] = sum(len(j.touches) for j in ds.journeys)
        extra["load_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        if name == "models":
            by_grouping = {}
            for by in ("channel", "campaign"):
                results = by_grouping[by] = report.attribution(ds, rules, Window(), by=by)
                extra[f"conversions_{by}"] = results[0].conversions
                assert all(sum(r.credits.values()) == r.conversions for r in results)
            extra["models"] = len(MODELS) * 2
            extra["credits"] = digest(by_grouping)
        elif name == "funnel":
            doc = snapshot(ds, FUNNEL_WINDOW.start, FUNNEL_WINDOW.end)
            extra["document"] = hashlib.sha256(to_json(doc).encode()).hexdigest()[:16]
        elif name == "kpis":
            doc = report.kpis(ds, rules, Window())
            extra["customers"] = doc["cycle"][0]["customers"]
            extra["document"] = hashlib.sha256(to_json(doc).encode()).hexdigest()[:16]
        extra["compute_seconds"] = time.perf_counter() - t1
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the data of the last run")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "populate":  # its own process: Linux keeps a parent's peak RSS across fork
        t0 = time.perf_counter()
        counts = populate(database(), args.leads, args.seed)
        print(f"    {counts} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return
    if args.phase:
        print(json.dumps(phase(args.phase)))
        return
    if not args.reuse:
        print(f"... filling {SCHEMA} with {args.leads:,} leads", file=sys.stderr, flush=True)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--phase",
                "populate",
                "--leads",
                str(args.leads),
                "--seed",
                str(args.seed),
            ],
            check=True,
        )
    results = {}
    phases = ("baseline", "load", "models", "streamed", "kpis", "streamed-kpis", "funnel")
    for name in (*phases, "streamed-funnel"):
        print(f"... {name}", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--phase", name], capture_output=True, text=True
        )
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = results["baseline"]
    rate = base["rows"] / base["seconds"]
    print(
        f"{results['load']['leads']:,} leads, {base['rows']:,} touchpoints "
        f"(+ stage moves, milestones, costs)"
    )
    print(
        f"{'phase':13} {'seconds':>8} {'x baseline':>11} {'touches/s':>11} {'peak RSS':>10}"
        f" {'x baseline':>11}"
    )
    for name, r in results.items():
        print(
            f"{name:13} {r['seconds']:8.1f} {r['seconds'] / base['seconds']:11.1f} "
            f"{base['rows'] / r['seconds']:11,.0f} {r['peak_rss_mb']:8,.0f} MB "
            f"{r['peak_rss_mb'] / base['peak_rss_mb']:11.2f}"
        )
    m, k = results["models"], results["kpis"]
    print(
        f"models alone: {m['compute_seconds']:.1f} s for {m['models']} model runs "
        f"({m['conversions_channel']:,} conversions); kpis alone: {k['compute_seconds']:.1f} s;"
        f" baseline read {rate:,.0f} touchpoints/s"
    )
    same = results["streamed"]["credits"] == m["credits"]
    print(f"streamed credits {'identical to' if same else 'DIFFER FROM'} the in-memory models'")
    same_kpis = results["streamed-kpis"]["document"] == k["document"]
    print(f"streamed KPIs {'identical to' if same_kpis else 'DIFFER FROM'} the in-memory KPIs")
    same_funnel = results["streamed-funnel"]["document"] == results["funnel"]["document"]
    print(f"streamed funnel {'identical to' if same_funnel else 'DIFFERS FROM'} the snapshot")
    if not same or not same_kpis or not same_funnel:
        sys.exit(1)


if __name__ == "__main__":
    main()
