"""The services and their dependencies: started before the database or the broker they wait,
logging every few seconds; an outage mid-stream is logged when it starts and when it ends and
counted in the retry metric (issue 14). The outage is real: PostgreSQL is reached through a TCP
proxy the test cuts and restores."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.domain.generator import generate, lines
from engine.postgres import db as dbmod
from tests.e2e.test_cli import ROOT
from tests.e2e.test_operations import _free_port, _leads
from tests.inprocess import run_in_process as run


class Proxy:
    """A TCP proxy to PostgreSQL on a fixed port: `cut()` closes it and every connection
    through it (connections refused from then on), `start()` opens it again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self.server: socket.socket | None = None
        self.sockets: list[socket.socket] = []

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            if self.server is not server:  # cut meanwhile
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self.server is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked in its thread
                self.server.shutdown(socket.SHUT_RDWR)
            self.server.close()
            self.server = None
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.sockets.clear()


class Service:
    """A CLI service as a subprocess whose JSON log lines are collected as they come."""

    def __init__(self, env: dict[str, str], *argv: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", *argv],
            env=env | {"LEADENGINE_LOG_FORMAT": "json"},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_for_log(self, event: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.logs():
                if entry.get("event") == event and all(
                    entry.get(k) == v for k, v in fields.items()
                ):
                    return entry
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            time.sleep(0.2)
        raise AssertionError(f"no {event!r} {fields} in:\n" + "".join(self.lines)[-3000:])

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        return code, self.proc.stdout.read()


@pytest.fixture
def proxy(server_url: str) -> Iterator[Proxy]:
    server = dbmod.from_url(server_url, "public")
    proxy = Proxy((server.host, server.port))
    yield proxy
    proxy.cut()


def _via(env: dict[str, str], proxy: Proxy, server_url: str) -> dict[str, str]:
    server = dbmod.from_url(server_url, "public")
    url = f"postgresql://{server.user}@127.0.0.1:{proxy.port}/{server.dbname}"
    return env | {"LEADENGINE_DATABASE_URL": url, "LEADENGINE_CONNECT_TIMEOUT_S": "2"}


def _until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_consume_started_before_its_database_and_broker_waits_for_them(
    cli_env: dict[str, str], server_url: str, proxy: Proxy
) -> None:
    env = _via(cli_env, proxy, server_url) | {
        "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_free_port()}"
    }
    service = Service(env, "consume")
    service.wait_for_log("outage started; retrying", what="database")
    service.wait_for_log("outage continues; retrying", what="database")  # every few seconds
    proxy.start()  # the database is back: on to the broker, which is still missing
    service.wait_for_log("outage ended", what="database")
    service.wait_for_log("outage started; retrying", what="kafka broker")
    code, _ = service.stop()
    assert code == 2  # stopped before it could run
    assert not any("Traceback" in line for line in service.lines)


def test_project_follow_waits_out_a_database_outage(
    cli_env: dict[str, str],
    server_url: str,
    database: dbmod.Database,
    proxy: Proxy,
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    events = generate(30, seed=21)
    half = len(events) // 2
    first.write_text("".join(line + "\n" for line in lines(events[:half])))
    second.write_text("".join(line + "\n" for line in lines(events[half:])))
    run(cli_env, "ingest", str(first), "--no-project")

    def caught_up() -> bool:
        return run(cli_env, "status", "--check", "--max-lag", "0", ok=False).returncode == 0

    port = _free_port()
    service = Service(
        _via(cli_env, proxy, server_url) | {"LEADENGINE_METRICS_PORT": str(port)},
        "project",
        "--follow",
    )
    service.wait_for_log("outage started; retrying", what="database")  # started before it
    proxy.start()
    service.wait_for_log("projector following the log")
    _until(caught_up)
    assert _leads(database) > 0

    proxy.cut()  # mid-stream
    service.wait_for_log("outage started; retrying", what="database", timeout=30)
    run(cli_env, "ingest", str(second), "--no-project")  # arrives during the outage
    time.sleep(1)
    assert not caught_up()
    proxy.start()
    ended = service.wait_for_log("outage ended", what="database")
    assert ended["down_s"] > 0
    _until(caught_up)

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    retried = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('leadengine_retries_total{what="database"}')
    ]
    assert retried and retried[0] >= 2, text
    code, _ = service.stop()
    assert code == 0, "".join(service.lines)[-3000:]
