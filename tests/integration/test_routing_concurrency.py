"""Two consumer processes routing leads of one queue at once, over a real broker and database:
the round-robin order is never broken and no rep is given more than its capacity (a capacity
that binds: a third of the leads find every rep full and are counted as RoutingFailed)."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from psycopg import sql

from engine.domain.leadids import LeadIds, id_secret
from engine.postgres import db as dbmod
from engine.postgres.keyfile import load_master_key
from engine.services.application import EVENTS_TABLE
from tests.factory import raw
from tests.integration.test_kafka_failures import Consumers, consumers  # noqa: F401
from tests.kafka_helpers import publish, wait_for

REPS = ("ana", "bo", "chidi", "dee")
RACE_KEYS = ("batches", "races", "max_races_in_a_row", "max_stall_s")
LEADS = 120
CAPACITY = 20  # 4 reps x 20 = 80 leads routed, 40 left with every rep full


def race_rules(capacity: int) -> str:
    """One round-robin queue of four reps, each holding at most `capacity` open leads."""
    return f"""
name: race
version: "1"
combine: {{fit_weight: 0.0, engagement_weight: 1.0}}
engagement:
  half_life_days: null
  rules: [{{id: form, types: [touch.form_submitted], points: 80}}]
mql: {{total_at_least: 50}}
routing:
  queues:
    - id: one
      strategy: round_robin
      reps: [{", ".join(f"{{id: {r}, capacity: {capacity}}}" for r in REPS)}]
"""


#: room for every lead (test_identity's two ingest processes route all 120)
RULES = race_rules(LEADS // len(REPS))


def stored(db: dbmod.Database, suffix: str) -> list[dict[str, Any]]:
    query = sql.SQL("SELECT state FROM {} WHERE topic LIKE %s ORDER BY notification_id").format(
        sql.Identifier(db.schema, EVENTS_TABLE)
    )
    with db.connect() as conn:
        return [json.loads(bytes(r[0])) for r in conn.execute(query, (f"%{suffix}",)).fetchall()]


def owned(log: Path) -> set[int] | None:
    """The partitions a consumer holds now, from its JSON log (None: it never got any)."""
    held: set[int] | None = None
    for text in log.read_text().splitlines():
        try:
            entry = json.loads(text)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == "partition assigned":
            held = (held or set()) | {entry["partition"]}
        elif entry.get("event") == "partition revoked" and held is not None:
            held.discard(entry["partition"])
    return held


def settled(logs: list[Path]) -> bool:
    """Both members hold partitions, none twice, all four between them: the rebalance the
    second member caused is over."""
    held = [owned(log) for log in logs]
    if any(not h for h in held):
        return False
    first, second = held
    assert first is not None and second is not None
    return not first & second and first | second == {0, 1, 2, 3}


def test_two_consumers_never_break_round_robin_or_overassign(
    kafka_env: dict[str, str],
    database: dbmod.Database,
    tmp_path: Path,
    consumers: Consumers,  # noqa: F811
) -> None:
    rules = tmp_path / "race.yaml"
    rules.write_text(race_rules(CAPACITY))
    env = kafka_env | {"LEADENGINE_RULES_FILE": str(rules), "LEADENGINE_BATCH_SIZE": "4"}
    first, second = consumers.start(env), consumers.start(env)
    logs = [tmp_path / "consumer-0.log", tmp_path / "consumer-1.log"]
    wait_for(lambda: settled(logs), timeout=90)
    events = []
    for i in range(LEADS):
        key = f"race-{i:03}"
        events += [
            raw("lead.captured", key, {"email": f"{key}@acme.com"}, days=i / 100),
            raw("touch.form_submitted", key, {"channel": "web"}, days=i / 100),
        ]
    publish(
        kafka_env["LEADENGINE_KAFKA_BOOTSTRAP_SERVERS"], kafka_env["LEADENGINE_KAFKA_TOPIC"], events
    )
    routed = CAPACITY * len(REPS)
    wait_for(
        lambda: len(stored(database, "Lead.Routed")) + len(stored(database, "Lead.RoutingFailed"))
        >= LEADS,
        timeout=180,
        every=0.5,
    )
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    stats = [consumers.finish(p, timeout=60) for p in (first, second)]

    assigned = stored(database, "RoutingQueue.Assigned")
    assert [a["turn"] for a in assigned] == list(range(routed)), "a turn was given twice or lost"
    assert [a["rep"] for a in assigned] == [REPS[t % len(REPS)] for t in range(routed)]
    # no rep above its cap at any point of the log, and every cap reached
    held: Counter[str] = Counter()
    for a in assigned:
        held[a["rep"]] += 1
        assert held[a["rep"]] <= CAPACITY, f"{a['rep']} given lead {held[a['rep']]}"
    assert held == dict.fromkeys(REPS, CAPACITY)
    assert len(stored(database, "Lead.Routed")) == routed
    failed = stored(database, "Lead.RoutingFailed")
    assert len(failed) == LEADS - routed
    assert all("at capacity" in f["reason"] for f in failed), failed[0]
    master = load_master_key(None, None, Path(kafka_env["LEADENGINE_HOME"]))
    ids = LeadIds(id_secret(master))  # queues name leads by their (keyed) id, not their key
    everyone = {str(ids(e["subject"])) for e in events}
    assert len({a["lead_key"] for a in assigned}) == routed
    assert {a["lead_key"] for a in assigned} <= everyone
    assert all(s["records"] > 0 for s in stats), f"one consumer did nothing: {stats}"
    # no starvation: a batch that lost the race to the other consumer waits its turn (an
    # advisory lock on the queue) instead of being redone over and over: counted in redos, not
    # timed (how long a batch waits depends on the machine, how often it is redone does not)
    print("race stats:", [{k: s[k] for k in RACE_KEYS} for s in stats])
    assert max(s["max_races_in_a_row"] for s in stats) <= 2, stats
    assert all(s["races"] <= 2 * s["batches"] for s in stats), stats
