"""Links, merges, unmerges and touches racing on THREE `leadengine consume` processes of one
group over a real Kafka-protocol broker (a topic of 6 partitions, two each) and PostgreSQL.

An alias, its known lead, a duplicate merged into it and a key merged then unmerged are keyed
apart, so they land on three partitions held by three consumers; generated journeys (with
identity events) race beside them. Phase 1 publishes every join and the touches around them
at once; once they are stored, phase 2 publishes the qualifying forms of every key, which race
again. The result must be that of one writer taking the same stream in order (a second schema
ingested in-process): every fact stored exactly once on its own key's stream, the same people,
the same person state and attribution paths, the same projections (lead_current but its
owner columns, lead_person, identity_links, lead_touchpoints), and each person of the crafted
keys routed exactly once (the reps may differ: queues take turns in arrival order)."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from kafka.partitioner.default import murmur2
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.domain.rules import parse_rules
from engine.kafka.publish import ensure_topic
from engine.postgres import db as dbmod
from engine.readmodel import read_schema
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import raw
from tests.integration.test_kafka_failures import Consumers, consumers  # noqa: F401
from tests.integration.test_person_routing_kafka import decisions
from tests.integration.test_routing_concurrency import owned
from tests.integration.test_stitching_kafka import person_shape
from tests.kafka_helpers import expected_facts, publish, stored_facts, wait_for

PARTITIONS = 6
TRIOS = 16
REF = "leadengine_ref"
RULES = """
name: identity-three
version: "1"
combine: {fit_weight: 0.0, engagement_weight: 1.0}
engagement:
  half_life_days: null
  rules: [{id: form, types: [touch.form_submitted], points: 80}]
mql: {total_at_least: 50}
routing:
  queues:
    - id: us
      when: [{field: country, equals: US}]
      strategy: round_robin
      reps: [{id: ana}, {id: bo}]
    - id: rest
      strategy: round_robin
      reps: [{id: chidi}, {id: dee}]
"""
#: lead_current's columns that do not depend on which key's routing won a race
SAME = (
    "lead_id, lead_key, stage, score, fit, engagement, source_channel, source_campaign, "
    "first_touch_at, last_touch_at, touch_count, touch_counts::text, country, captured_at, "
    "mql_at, sal_at, person_id, mql_entered_at, last_event_at"
)


def partition(key: str) -> int:
    """The partition of 6 the producer's default partitioner gives `key` (as Java's)."""
    return int((murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS)


def trios() -> list[tuple[str, str, str, str]]:
    """(alias, winner, duplicate, unmerged) keys; alias, winner and duplicate on three
    different partitions, the unmerged key on another than the winner's."""
    found: list[tuple[str, str, str, str]] = []
    i = 0
    while len(found) < TRIOS:
        keys = (f"anon-{i:03}", f"ada-{i:03}", f"dup-{i:03}", f"undo-{i:03}")
        parts = [partition(k) for k in keys]
        if len(set(parts[:3])) == 3 and parts[3] != parts[1]:
            found.append(keys)
        i += 1
    return found


def crafted() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Phase 1 (joins and the touches around them) and phase 2 (every key qualifies)."""
    joins: list[dict[str, Any]] = []
    forms: list[dict[str, Any]] = []
    for i, (alias, win, dup, undo) in enumerate(trios()):
        t = 400 + i / 50  # after the generated journeys: their routings take no turn here
        joins += [
            raw("touch.ad_clicked", alias, {"channel": "paid_search", "campaign": "q1"}, days=t),
            raw("lead.captured", win, {"email": f"{win}@acme.com", "country": "US"}, days=t),
            raw("lead.captured", dup, {"email": f"{dup}@acme.com", "country": "DE"}, days=t),
            raw("lead.captured", undo, {"email": f"{undo}@acme.com", "country": "DE"}, days=t),
            raw("touch.page_viewed", alias, {"channel": "web"}, days=t + 0.001),
            raw("identity.linked", alias, {"to": win, "reason": "cookie"}, days=t + 0.002),
            raw("touch.page_viewed", win, {"channel": "web"}, days=t + 0.002),
            raw("lead.merged", dup, {"winner": win, "by": "crm", "reason": "dup"}, days=t + 0.003),
            raw("lead.merged", undo, {"winner": win, "by": "crm", "reason": "?"}, days=t + 0.003),
            raw("touch.email_opened", dup, {"channel": "email"}, days=t + 0.004),
            raw(
                "lead.unmerged", undo, {"winner": win, "by": "crm", "reason": "no"}, days=t + 0.005
            ),
        ]
        keys = [win, dup, undo] if i % 2 else [undo, dup, win]
        forms += [
            raw("touch.form_submitted", key, {"channel": "web"}, days=t + 0.01) for key in keys
        ]
        forms.append(raw("touch.page_viewed", alias, {"channel": "web"}, days=t + 0.011))
    return joins, forms


def settled(logs: list[Path]) -> bool:
    """Every member holds partitions, none twice, all of them between them."""
    held = [owned(log) for log in logs]
    if any(not h for h in held):
        return False
    together: set[int] = set()
    for h in held:
        assert h is not None
        if together & h:
            return False
        together |= h
    return together == set(range(PARTITIONS))


def rows(db: dbmod.Database, query: str) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        found = conn.execute(
            sql.SQL(query).format(
                s=sql.Identifier(db.schema), r=sql.Identifier(read_schema(db.schema))
            )
        ).fetchall()
    return sorted(tuple(r) for r in found)


def projections(db: dbmod.Database) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "lead_current": rows(db, f"SELECT {SAME} FROM {{r}}.lead_current"),
        "lead_person": rows(db, "SELECT lead_id, person_id FROM {s}.lead_person"),
        "identity_links": rows(
            db,
            "SELECT lead_id, other_lead_id, kind, event_id, occurred_at, person_id "
            "FROM {r}.identity_links",
        ),
        "lead_touchpoints": rows(
            db, "SELECT lead_id, event_id, type, channel, occurred_at FROM {r}.lead_touchpoints"
        ),
    }


def routings(db: dbmod.Database) -> Counter[UUID]:
    return Counter(lead for lead, kind in decisions(db) if kind == "Routed")


@pytest.fixture
def pair(
    settings: Settings, database: dbmod.Database, server_url: str
) -> Iterator[tuple[Runtime, Runtime]]:
    """The raced schema's runtime and a reference schema's, same master key (same home)."""
    rules = parse_rules(RULES)
    reference = settings.model_copy(update={"database_schema": REF})
    with ExitStack() as stack:
        raced = stack.enter_context(open_runtime(settings, rules=rules, database=database))
        ref = stack.enter_context(
            open_runtime(reference, rules=rules, database=dbmod.from_url(server_url, REF))
        )
        yield raced, ref


@pytest.mark.timeout(300)  # three consumers joining a group on a loaded machine
def test_links_merges_unmerges_and_touches_racing_on_three_consumers_are_exactly_once(
    kafka_env: dict[str, str],
    pair: tuple[Runtime, Runtime],
    tmp_path: Path,
    consumers: Consumers,  # noqa: F811
) -> None:
    raced, ref = pair
    bootstrap = kafka_env["LEADENGINE_KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"t3-{uuid.uuid4().hex[:10]}"
    ensure_topic(bootstrap, topic, partitions=PARTITIONS)
    rules = tmp_path / "three.yaml"
    rules.write_text(RULES)
    env = kafka_env | {
        "LEADENGINE_KAFKA_TOPIC": topic,
        "LEADENGINE_RULES_FILE": str(rules),
        "LEADENGINE_BATCH_SIZE": "5",
    }
    procs = [consumers.start(env) for _ in range(3)]
    wait_for(lambda: settled([tmp_path / f"consumer-{n}.log" for n in range(3)]), 90)

    generated = generate(60, seed=29, identity=0.6)
    joins, forms = crafted()
    phase1 = generated + joins
    publish(bootstrap, topic, phase1)
    # every join stored before the forms race (phase 1's facts, each exactly once)
    first = expected_facts(phase1)
    wait_for(lambda: stored_facts(raced.db) == first, timeout=90, every=0.5)
    publish(bootstrap, topic, forms)
    events = phase1 + forms
    want = expected_facts(events)
    wait_for(lambda: stored_facts(raced.db) == want, timeout=120, every=0.5)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    stats = [consumers.finish(p, timeout=60) for p in procs]
    assert all(s["accepted"] > 0 for s in stats), f"a consumer did nothing: {stats}"

    # the same stream, one writer, in publish order: phase 1, then phase 2
    ref.app.ingest([validate_event(e) for e in phase1])
    ref.app.ingest([validate_event(e) for e in forms])
    assert stored_facts(raced.db) == want == stored_facts(ref.db)  # exactly once, in order

    raced.app.clear_cache()
    people = ref.app.identity_map().people()
    assert raced.app.identity_map().people() == people
    assert len([p for p in people.values() if len(p) > 1]) >= TRIOS + 5
    not_leads = ("campaign.", "rep.", "account.")
    for key in sorted({e["subject"] for e in events if not e["type"].startswith(not_leads)}):
        assert person_shape(raced.app, key) == person_shape(ref.app, key), key

    for rt in (raced, ref):
        rt.projector.run(until_caught_up=True)
    got, expected = projections(raced.db), projections(ref.db)
    for name in expected:
        assert got[name] == expected[name], name
    assert {(lead, person) for lead, person in got["lead_person"]} == {
        (lead, person) for person, leads in people.items() for lead in leads
    }

    # one person, one owner: every crafted person (alias, winner, duplicate) is routed once,
    # and the unmerged key, a person of its own again, once too, on both runs
    for run in (raced, ref):
        routed = routings(run.db)
        for _alias, win, dup, undo in trios():
            w, d, u = (run.app.lead_id(k) for k in (win, dup, undo))
            assert routed[w] + routed[d] == 1, (run.db.schema, win, routed[w], routed[d])
            assert routed[u] == 1, (run.db.schema, undo)
    print("race stats:", [{k: s[k] for k in ("batches", "races")} for s in stats])
