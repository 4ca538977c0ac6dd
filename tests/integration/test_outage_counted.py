"""A database outage while the consumer works is logged when it starts and ends and counted in
the retry metric, not absorbed silently by the connection pool (issue 14)."""

from __future__ import annotations

import threading
from dataclasses import replace

from engine import metrics
from engine.cli.running import database_watched
from engine.consumers import retry
from engine.consumers.kafka import KafkaIngestor
from engine.domain.generator import generate
from engine.runtime import open_runtime
from engine.settings import Settings
from tests.integration.test_kafka_failures import OutageServer, outage_server  # noqa: F401
from tests.kafka_helpers import expected_facts, publish, stored_facts, wait_for


def _count(counter: object) -> float:
    return float(counter.labels("database")._value.get())  # type: ignore[attr-defined]


def test_a_database_outage_mid_stream_is_counted_and_waited_out(
    outage_server: OutageServer,  # noqa: F811
    kafka_settings: Settings,
) -> None:
    events = generate(200, seed=41)
    publish(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, events)
    settings = kafka_settings.model_copy(update={"batch_size": 50, "connect_timeout_s": 2})
    database = replace(outage_server.database, connect_timeout=2)
    outages, retries = _count(metrics.outages), _count(metrics.retries)
    with open_runtime(settings, database=database) as rt, database_watched(rt):
        ingestor = KafkaIngestor(rt.app, settings)
        outage_server.stop()  # before the first batch: every write waits for the server
        thread = threading.Thread(target=lambda: ingestor.run(until_caught_up=True))
        thread.start()
        # past the pool's wait (2 s): the outage reaches the retry, counted
        wait_for(lambda: _count(metrics.retries) - retries >= 1, 60)
        assert thread.is_alive()
        outage_server.start()
        thread.join(120)
        assert not thread.is_alive()
    assert _count(metrics.outages) - outages >= 1
    assert _count(metrics.retries) - retries >= 1
    assert retry.OUTAGES["database"].started is None  # ended
    assert stored_facts(database) == expected_facts(events)
