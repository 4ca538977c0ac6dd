"""A broker outage while the consumer works is logged when it starts and ends and counted in
the retry metric, though kafka-python reconnects silently (its logs are off the console). The
outage is real: the broker advertises a TCP proxy the test cuts and restores (issue 14)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator

import pytest

from engine import metrics
from engine.consumers import retry
from engine.consumers.kafka import KafkaIngestor
from engine.domain.generator import generate
from engine.kafka.broker import free_port, tansu_binary
from engine.kafka.publish import ensure_topic
from engine.runtime import Runtime
from engine.settings import Settings
from tests.e2e.test_outages import Proxy
from tests.kafka_helpers import expected_facts, publish, stored_facts, wait_for


@pytest.fixture
def proxied_broker() -> Iterator[Proxy]:
    """A Tansu broker reached (bootstrap and advertised) only through a proxy."""
    port = free_port()
    proxy = Proxy(("127.0.0.1", port))
    process = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    proxy.start()
    yield proxy
    proxy.cut()
    process.terminate()
    process.wait(10)


def test_a_broker_outage_mid_stream_is_logged_counted_and_waited_out(
    proxied_broker: Proxy, runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(retry.OUTAGES, "kafka broker", retry.Outage("kafka broker"))
    bootstrap = f"127.0.0.1:{proxied_broker.port}"
    wait_for(lambda: _reachable(bootstrap), timeout=30)
    kafka = settings.model_copy(
        update={
            "kafka_bootstrap_servers": bootstrap,
            "kafka_topic": "outage",
            "kafka_group": "outage",
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
        }
    )
    ensure_topic(bootstrap, "outage", partitions=2)
    events = generate(40, seed=43)
    half = len(events) // 2
    publish(bootstrap, "outage", events[:half])
    retries = metrics.retries.labels("kafka broker")._value.get()
    outages = metrics.outages.labels("kafka broker")._value.get()
    stop = threading.Event()
    with retry.kafka_watched():
        ingestor = KafkaIngestor(runtime.app, kafka)
        thread = threading.Thread(target=lambda: ingestor.run(stop=stop))
        thread.start()
        try:
            wait_for(lambda: stored_facts(runtime.db) == expected_facts(events[:half]), 60)
            proxied_broker.cut()
            wait_for(lambda: retry.OUTAGES["kafka broker"].started is not None, 30)
            # down until the consumer has retried once more after the outage began
            began = metrics.retries.labels("kafka broker")._value.get()
            wait_for(lambda: metrics.retries.labels("kafka broker")._value.get() > began, 30)
            proxied_broker.start()
            publish(bootstrap, "outage", events[half:])
            wait_for(lambda: stored_facts(runtime.db) == expected_facts(events), 90)
            wait_for(lambda: retry.OUTAGES["kafka broker"].started is None, 30)
        finally:
            stop.set()
            thread.join(60)
    assert metrics.outages.labels("kafka broker")._value.get() - outages == 1
    assert metrics.retries.labels("kafka broker")._value.get() - retries >= 1


def _reachable(bootstrap: str) -> bool:
    try:
        ensure_topic(bootstrap, "ready", partitions=1, bootstrap_timeout_ms=1000)
    except Exception:
        return False
    return True
