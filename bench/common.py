"""What every benchmark here shares."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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
