"""Kafka end-to-end benchmark: publish N events, consume to caught-up (stored and projected).

Beside it, in the same run and on the same topic, two baselines:

  raw consume   a kafka-python group member that only counts records: the ceiling the engine's
                consumer cannot beat
  raw pipeline  poll, parse each record's JSON, COPY the batch into an event-store-shaped table
                (originator id, version, topic, state; primary key on the first two), commit
                per batch: what PostgreSQL and Kafka alone do with the same events (the
                end-to-end target is a ratio of this one)

The engine runs as `leadengine consume --until-caught-up` does: the consumer stores while a
projector process beside it projects (engine/consumers/beside.py); end to end counts until
both are done.

Broker: LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu. Database:
LEADENGINE_DATABASE_URL, else an embedded PostgreSQL in a temp dir. Each consumer runs in its own
process, so its peak RSS is its own. Rates count from the first record received (the group join,
~3 s here, is printed apart).

With --baseline DIR (another checkout, e.g. `git worktree add /tmp/base main`), that
checkout's engine phase runs too, on the same topic in the same run: its end to end (its way:
consume, then project, or beside) against this one's; and the CPU seconds each engine phase
used (its process and the projector's, from the parent's rusage of its children), which the
machine's other load moves less than it moves wall time.

Usage: python bench/kafka_e2e.py [--leads 3000] [--seed 1] [--partitions 4] [--batch-size 2000]
                                 [--baseline DIR [--baseline-first]]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import database_url, kafka_bootstrap, peak_rss_mb, run_phase  # noqa: E402

from engine.domain.generator import generate  # noqa: E402
from engine.kafka.publish import Publisher, ensure_topic  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.settings import Settings  # noqa: E402

QUICK_JOIN = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def phase_raw(args: argparse.Namespace) -> dict[str, Any]:
    """Consume the whole topic in a fresh group, counting records and bytes: nothing else."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=f"raw-{uuid.uuid4()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.batch_size,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **QUICK_JOIN,
    )
    t0 = time.perf_counter()
    first = None
    n = size = 0
    last_progress = time.perf_counter()
    while n < args.expect:
        batch = consumer.poll(timeout_ms=500)
        for records in batch.values():
            if first is None:
                first = time.perf_counter()
            n += len(records)
            size += sum(len(r.value) for r in records)
        if batch:
            last_progress = time.perf_counter()
        elif time.perf_counter() - last_progress > 60:
            sys.exit(f"raw consumer stalled at {n:,} of {args.expect:,} records for 60 s")
    t1 = time.perf_counter()
    consumer.close()
    assert first is not None
    return {
        "records": n,
        "bytes": size,
        "join_s": first - t0,
        "consume_s": t1 - first,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Poll, parse JSON, COPY into an event-store-shaped table, commit per batch."""
    import psycopg
    from kafka import KafkaConsumer

    schema = f"bench_raw_{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=f"pipeline-{uuid.uuid4()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.batch_size,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **QUICK_JOIN,
    )
    conn = psycopg.connect(args.url, autocommit=True)
    conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(
        f"CREATE TABLE {schema}.stored_events (originator_id uuid NOT NULL, "
        "originator_version bigint NOT NULL, topic text NOT NULL, state bytea NOT NULL, "
        "notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
    )
    conn.execute(f"CREATE UNIQUE INDEX ON {schema}.stored_events (notification_id)")
    copy_sql = (
        f"COPY {schema}.stored_events (originator_id, originator_version, topic, state) FROM STDIN"
    )
    versions: dict[str, int] = {}
    t0 = time.perf_counter()
    first = None
    n = 0
    last_progress = time.perf_counter()
    try:
        while n < args.expect:
            batch = consumer.poll(timeout_ms=500)
            if batch:
                if first is None:
                    first = time.perf_counter()
                last_progress = time.perf_counter()
                with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for records in batch.values():
                        for record in records:
                            event = json.loads(record.value)
                            subject = str(event.get("subject") or event.get("id"))
                            version = versions.get(subject, 0) + 1
                            versions[subject] = version
                            copy.write_row(
                                (
                                    uuid.uuid5(uuid.NAMESPACE_URL, subject),
                                    version,
                                    str(event.get("type")),
                                    record.value,
                                )
                            )
                            n += 1
            elif time.perf_counter() - last_progress > 60:
                sys.exit(f"raw pipeline stalled at {n:,} of {args.expect:,} records for 60 s")
        t1 = time.perf_counter()
    finally:
        consumer.close()
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
    assert first is not None
    return {
        "records": n,
        "join_s": first - t0,
        "consume_s": t1 - first,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_engine(args: argparse.Namespace) -> dict[str, Any]:
    """The engine's consumer to caught-up with the projector beside it: the real path."""
    from engine.consumers.beside import ProjectorBeside
    from engine.consumers.kafka import KafkaIngestor
    from engine.runtime import open_runtime

    gc.set_threshold(100_000, 50, 100)  # as `leadengine consume` does
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    database = dbmod.from_url(args.url, schema)
    settings = Settings(
        database_url=args.url,
        database_schema=schema,  # type: ignore[arg-type]
        kafka_bootstrap_servers=args.bootstrap,
        kafka_topic=args.topic,
        kafka_group=f"engine-{uuid.uuid4()}",
        kafka_session_timeout_ms=6000,
        kafka_heartbeat_interval_ms=1000,
        batch_size=args.batch_size,
    )
    try:
        with open_runtime(settings, database=database) as rt:
            t0 = time.perf_counter()
            beside = ProjectorBeside(settings, database, rt.app.rules, rt.app.master_key)
            beside.start()
            stats = KafkaIngestor(rt.app, settings).run(until_caught_up=True)
            t1 = time.perf_counter()
            projected = beside.finish()
            t2 = time.perf_counter()
        join = (stats.first_record or time.monotonic()) - stats.started
        return {
            "records": stats.records,
            "accepted": stats.accepted,
            "join_s": join,
            "consume_s": (t1 - t0) - join,
            "e2e_s": (t2 - t0) - join,
            "tail_s": t2 - t1,
            "notifications": projected,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        dbmod.drop_schema(database)


def run_engine_phase(
    phase: str, args: argparse.Namespace, url: str, expect: int, script: str = __file__
) -> dict[str, Any]:
    options = ["--url", url, "--bootstrap", args.bootstrap, "--topic", args.topic]
    options += ["--expect", str(expect), "--batch-size", str(args.batch_size)]
    env = os.environ | {"LEADENGINE_LOG_LEVEL": "WARNING"}
    if script != __file__:  # the other checkout's engine, not this one's
        env["PYTHONPATH"] = str(Path(script).resolve().parents[1])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_phase(script, phase, options, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the phase's process and its children (the projector beside), setup included: CPU
    # seconds move less with the machine's other load than wall seconds do
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def e2e_seconds(eng: dict[str, Any]) -> float:
    """Consume to stored and projected (an older checkout's phase: consume, then project)."""
    return float(eng["e2e_s"]) if "e2e_s" in eng else eng["consume_s"] + eng["project_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--batch-size", type=int, default=2000, help="max records per poll (LEADENGINE_BATCH_SIZE)"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose engine phase runs too, same topic"
    )
    parser.add_argument(
        "--baseline-first", action="store_true", help="run the baseline's engine phase first"
    )
    for hidden in ("--phase", "--url", "--bootstrap", "--topic", "--expect"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        args.expect = int(args.expect)
        fn = {"raw": phase_raw, "pipeline": phase_pipeline}.get(args.phase, phase_engine)
        print(json.dumps(fn(args)))
        return

    url = database_url()
    with kafka_bootstrap() as bootstrap:
        args.bootstrap = bootstrap
        args.topic = f"bench-{uuid.uuid4().hex[:8]}"
        ensure_topic(args.bootstrap, args.topic, partitions=args.partitions)
        events = generate(args.leads, args.seed)
        t0 = time.perf_counter()
        with Publisher(args.bootstrap, topic=args.topic, validate=False) as pub:
            pub.publish_many(events)
        publish_s = time.perf_counter() - t0
        print(
            f"... published {len(events):,} events in {publish_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        raw = run_engine_phase("raw", args, url, len(events))
        pipe = run_engine_phase("pipeline", args, url, len(events))
        other = str(args.baseline / "bench/kafka_e2e.py") if args.baseline else None
        base = None
        if other and args.baseline_first:  # the later phase runs on a busier machine, often
            base = run_engine_phase("engine", args, url, len(events), other)
        eng = run_engine_phase("engine", args, url, len(events))
        if other and not args.baseline_first:
            base = run_engine_phase("engine", args, url, len(events), other)

    raw_rate = raw["records"] / raw["consume_s"]
    pipe_rate = pipe["records"] / pipe["consume_s"]
    consume_rate = eng["records"] / eng["consume_s"]
    e2e_rate = eng["records"] / e2e_seconds(eng)
    print(
        f"topic: {len(events):,} events ({args.leads:,} leads), {args.partitions} partitions, "
        f"{raw['bytes'] / 1e6:.1f} MB; published at {len(events) / publish_s:,.0f} events/s"
    )
    print(
        f"group join (not in the rates): raw {raw['join_s']:.1f} s, pipeline "
        f"{pipe['join_s']:.1f} s, engine {eng['join_s']:.1f} s"
    )
    print(
        f"raw kafka-python consume   {raw_rate:10,.0f} events/s   "
        f"peak RSS {raw['peak_rss_mb']:6.0f} MB   (ceiling)"
    )
    print(
        f"raw pipeline (COPY)        {pipe_rate:10,.0f} events/s   x{pipe_rate / raw_rate:.3f} raw"
        f"   peak RSS {pipe['peak_rss_mb']:6.0f} MB   (baseline)"
    )
    print(
        f"engine consume -> store    {consume_rate:10,.0f} events/s   "
        f"x{consume_rate / pipe_rate:.3f} pipeline   (projector beside it)"
    )
    print(
        f"engine projection tail     {eng['tail_s']:10.1f} s after the last batch was stored "
        f"({eng['notifications']:,} notifications projected in all)"
    )
    rss_ratio = eng["peak_rss_mb"] / pipe["peak_rss_mb"]
    print(
        f"engine end to end          {e2e_rate:10,.0f} events/s   "
        f"x{e2e_rate / pipe_rate:.3f} pipeline   x{e2e_rate / raw_rate:.3f} raw"
        f"   peak RSS {eng['peak_rss_mb']:6.0f} MB (x{rss_ratio:.2f}; the projector's not in it)"
    )
    print(
        f"engine CPU                 {eng['cpu_s']:10.1f} s (consumer and projector, user + "
        f"sys, setup included): {eng['records'] / eng['cpu_s']:,.0f} events per CPU second; "
        f"the pipeline {pipe['cpu_s']:.1f} s"
    )
    if base is not None:
        base_rate = base["records"] / e2e_seconds(base)
        print(
            f"baseline engine end to end {base_rate:10,.0f} events/s   "
            f"x{base_rate / pipe_rate:.3f} pipeline   "
            f"(this one: x{e2e_rate / base_rate:.2f} of it; {args.baseline})"
        )
        print(
            f"baseline engine CPU        {base['cpu_s']:10.1f} s   "
            f"(this one: x{base['cpu_s'] / eng['cpu_s']:.2f} fewer CPU seconds)"
        )
    print(
        f"engine stored {eng['accepted']:,} new events of {eng['records']:,} records "
        f"(the rest are the generator's deliberate duplicates)"
    )


if __name__ == "__main__":
    main()
