"""Links and touches racing on two consumers over a real Kafka-protocol broker: an alias and its
lead are keyed apart, so they land on different partitions and different consumers. Every fact
is stored exactly once on its own key's stream, and the people (identity map, read model,
person state) are those of one in-order ingestion of the same stream."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from kafka.partitioner.default import murmur2
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.runtime import Runtime
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.integration.test_kafka_failures import Consumers, consumers  # noqa: F401
from tests.integration.test_routing_concurrency import settled
from tests.kafka_helpers import expected_facts, publish, stored_facts, wait_for

IDENTITY = ("identity.linked", "lead.merged", "lead.unmerged")


def partition(key: str) -> int:
    """The partition of 4 the producer's default partitioner gives `key` (as Java's)."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % 4)


def person_shape(app: LeadEngine, key: str) -> tuple[Any, ...]:
    """The person's state but its owner: routing turns follow the order leads of different
    partitions interleave (by design, tests/integration/test_routing_concurrency.py)."""
    p = app.person(key)
    path = tuple((t.lead_id, t.fact.source, t.fact.event_id) for t in p.path)
    return (p.person_id, p.lead_ids, p.stage, p.furthest, p.score.total, path)


def test_links_and_touches_racing_on_two_consumers_make_the_same_people(
    runtime: Runtime,
    kafka_env: dict[str, str],
    tmp_path: Path,
    consumers: Consumers,  # noqa: F811
) -> None:
    events = generate(160, seed=23, identity=0.6)
    links = [e for e in events if e["type"] in IDENTITY]
    other = {"identity.linked": "to", "lead.merged": "winner", "lead.unmerged": "winner"}
    apart = [e for e in links if partition(e["subject"]) != partition(e["data"][other[e["type"]]])]
    assert len(apart) >= 10  # the race this test is about: alias and lead on two partitions
    env = kafka_env | {"LEADENGINE_BATCH_SIZE": "7"}
    first, second = consumers.start(env), consumers.start(env)
    wait_for(lambda: settled([tmp_path / "consumer-0.log", tmp_path / "consumer-1.log"]), 90)
    publish(env["LEADENGINE_KAFKA_BOOTSTRAP_SERVERS"], env["LEADENGINE_KAFKA_TOPIC"], events)
    want = expected_facts(events)
    wait_for(lambda: stored_facts(runtime.db) == want, timeout=240, every=0.5)
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    stats = [consumers.finish(p, timeout=60) for p in (first, second)]
    assert all(s["accepted"] > 0 for s in stats)  # both consumers took part

    assert stored_facts(runtime.db) == want  # exactly once, each key's facts in order
    reference = LeadEngine(rules=runtime.rules, env=POPO_ENV, master_key=runtime.app.master_key)
    reference.ingest([validate_event(e) for e in events])
    raced = runtime.app
    raced.clear_cache()
    assert raced.identity_map().people() == reference.identity_map().people()
    assert len(reference.identity_map().people()) >= 30
    not_leads = ("campaign.", "rep.", "account.")
    for key in sorted({e["subject"] for e in events if not e["type"].startswith(not_leads)}):
        assert person_shape(raced, key) == person_shape(reference, key), key

    runtime.projector.run(until_caught_up=True)
    with runtime.db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT lead_id, person_id FROM {}").format(
                sql.Identifier(runtime.db.schema, "lead_person")
            )
        ).fetchall()
    folded = reference.identity_map().people()
    assert set(rows) == {(lead, person) for person, leads in folded.items() for lead in leads}
