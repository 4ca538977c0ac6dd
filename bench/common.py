"""What every benchmark here shares."""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def settings_for(url: str, schema: str) -> Any:
    """The engine's settings for a bench phase: every phase (a process of its own) finds the
    same master key file in the same home."""
    from engine.settings import Settings

    return Settings(  # type: ignore[arg-type]
        database_url=url,
        database_schema=schema,
        home=Path(tempfile.gettempdir()) / "leadengine-bench-home",
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB (each phase runs in its own process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def database_url() -> str:
    """LEADENGINE_DATABASE_URL, else a throwaway embedded PostgreSQL in a temp dir."""
    url = os.environ.get("LEADENGINE_DATABASE_URL")
    if url:
        return url
    from engine.postgres import db as dbmod

    d = dbmod.embedded(Path(tempfile.mkdtemp(prefix="leadengine-bench-")), "public")
    return f"host={d.host} port={d.port} dbname={d.dbname} user={d.user}"


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """LEADENGINE_KAFKA_BOOTSTRAP_SERVERS, else an embedded Tansu for the duration."""
    bootstrap = os.environ.get("LEADENGINE_KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        yield bootstrap
        return
    from engine.kafka.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def run_phase(
    script: str, phase: str, args: Sequence[str], *, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `script --phase PHASE ARGS...` in its own process (so its peak RSS is its own);
    the JSON document on its last line of output. Exits with its stderr if it fails."""
    print(f"... {phase} phase", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, script, "--phase", phase, *args],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    if proc.returncode:
        sys.exit(f"{phase} phase failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# -- the ingest-and-project phases that bench/ingest.py, identity.py and accounts.py share ----


def phase_parser(doc: str | None, phases: Sequence[str]) -> argparse.ArgumentParser:
    """`--leads` and `--seed`, and the hidden `--phase PHASE --url URL --data FILE` with which
    a benchmark runs one phase of itself in a child process (`run_phase`)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--phase", choices=list(phases), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser


def ingest_and_project(url: str, data: list[bytes]) -> dict[str, float]:
    """The engine's path on a schema of its own: batched ingest (many events, one
    transaction), then batched projection; times, counts and this process's peak RSS."""
    from engine.consumers.lines import ingest_lines
    from engine.postgres import db as dbmod
    from engine.runtime import open_runtime
    from engine.settings import Settings

    database = dbmod.from_url(url, f"bench_{uuid.uuid4().hex[:8]}")
    settings = Settings(database_url=url, database_schema=database.schema)  # type: ignore[arg-type]
    try:
        with open_runtime(settings, database=database) as rt:
            t0 = time.perf_counter()
            report = ingest_lines(
                data, origin="bench", app=rt.app, deadletters=rt.deadletters, batch_size=1000
            )
            t1 = time.perf_counter()
            projected = rt.projector.run()
            t2 = time.perf_counter()
        return {
            "events": report.accepted,
            "store_s": t1 - t0,
            "project_s": t2 - t1,
            "notifications": projected,
            "peak_rss_mb": peak_rss_mb(),
        }
    finally:
        dbmod.drop_schema(database)


def child_phase(args: argparse.Namespace) -> None:
    """In the child process: `ingest_and_project` the phase's file; its JSON on the last line."""
    gc.set_threshold(100_000, 50, 100)
    data = Path(args.data).read_bytes().splitlines()
    print(json.dumps(ingest_and_project(args.url, data)))


def write_events(directory: Path, name: str, events: list[dict[str, Any]]) -> Path:
    """The events as a JSON-lines file `name.jsonl` in `directory` (what the phases read)."""
    from engine.domain.generator import lines

    path = directory / f"{name}.jsonl"
    path.write_text("".join(lines(events)))
    return path


def phase(script: str, name: str, url: str, data: Path) -> dict[str, Any]:
    """`run_phase` for a phase that reads the events of `data` into the database at `url`."""
    return run_phase(script, name, ["--url", url, "--data", str(data)])


def store_rate(r: Mapping[str, float]) -> float:
    """Events per second into the store."""
    return r["events"] / r["store_s"]


def end_to_end_rate(r: Mapping[str, float]) -> float:
    """Events per second into the store and through the projection."""
    return r["events"] / (r["store_s"] + r["project_s"])


def projection_rate(r: Mapping[str, float]) -> float:
    """Notifications per second through the projection."""
    return r["notifications"] / r["project_s"] if r["project_s"] else 0.0
