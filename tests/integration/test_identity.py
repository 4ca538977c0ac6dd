"""Event identity and concurrent writers over a real PostgreSQL (and a real broker): a reused
(source, id) with other content is kept as a dead letter, never lost nor stored; two `ingest`
processes routing leads of one queue both finish."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from engine.consumers.kafka import KafkaIngestor
from engine.consumers.lines import ingest_lines
from engine.domain.leadids import LeadIds, id_secret
from engine.postgres import db as dbmod
from engine.postgres.keyfile import load_master_key
from engine.runtime import Runtime
from engine.settings import Settings
from tests.factory import raw
from tests.integration.test_routing_concurrency import RULES, stored
from tests.kafka_helpers import publish, read_topic, stored_facts

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "grace@example.org"


def deal(amount: str, *, source: str = "crm", id: str = "deal-7") -> dict[str, Any]:
    return {
        **raw("deal.won", "lead-7", {"amount": amount, "currency": "IDR"}, id=id),
        "source": source,
    }


def captured() -> dict[str, Any]:
    return raw("lead.captured", "lead-7", {"email": EMAIL}, id="cap-7")


def lines(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def test_ingest_keeps_a_conflict_as_a_dead_letter_and_counts_it(runtime: Runtime) -> None:
    def ingest(origin: str, *events: dict[str, Any]) -> dict[str, int]:
        return ingest_lines(
            lines(*events), origin=origin, app=runtime.app, deadletters=runtime.deadletters
        ).as_dict()

    first = ingest("file:a", captured(), deal("1000"), deal("1000", source="web"))
    assert (first["accepted"], first["duplicates"], first["conflicts"]) == (3, 0, 0)
    runtime.app.clear_cache()
    reused = deal("99999")
    second = ingest("file:b", captured(), deal("1000"), reused)
    assert (second["accepted"], second["duplicates"], second["conflicts"]) == (0, 2, 1)
    assert second["rejected"] == 0  # counted apart from invalid lines
    (letter,) = runtime.deadletters.latest(10)
    assert letter["origin"] == "file:b:3"
    assert letter["raw"] == json.dumps(reused)  # the original bytes
    assert letter["event_id"] == "deal-7" and letter["event_type"] == "deal.won"
    assert letter["field"] == "data.amount"
    assert "'crm'" in letter["error"] and "stored event" in letter["error"]
    assert "99999" not in letter["error"] and EMAIL not in letter["error"]
    amounts = [f.data["amount"] for f in runtime.app.get_lead("lead-7").facts if "amount" in f.data]
    assert amounts == ["1000", "1000"]  # crm's and web's; the reused id stored nothing


def test_after_forget_a_redelivered_event_is_a_duplicate_in_postgres(runtime: Runtime) -> None:
    from datetime import UTC, datetime

    events = [captured(), deal("1000")]
    ingest_lines(lines(*events), origin="a", app=runtime.app, deadletters=runtime.deadletters)
    runtime.app.forget("lead-7", reason="ticket 7", by="dpo", at=datetime(2026, 4, 1, tzinfo=UTC))
    runtime.app.clear_cache()
    report = ingest_lines(
        lines(*events), origin="b", app=runtime.app, deadletters=runtime.deadletters
    ).as_dict()
    assert (report["accepted"], report["duplicates"], report["conflicts"]) == (0, 2, 0)
    assert runtime.deadletters.count() == 0


def test_consume_sends_a_conflict_to_the_dead_letter_topic(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    bootstrap, topic = str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic
    reused = deal("99999")
    publish(bootstrap, topic, [captured(), deal("1000"), deal("1000", source="web"), reused])
    stats = KafkaIngestor(runtime.app, kafka_settings).run(
        stop=threading.Event(), until_caught_up=True
    )
    doc = stats.as_dict()
    assert (doc["accepted"], doc["conflicts"], doc["dead_lettered"]) == (3, 1, 1)
    counted = REGISTRY.get_sample_value("leadengine_consumer_conflicts_total", {"topic": topic})
    assert counted == 1
    (letter,) = read_topic(bootstrap, kafka_settings.dlq_topic, expect=1)
    assert json.loads(letter.value) == reused
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["leadengine.error.field"] == "data.amount"
    assert headers["leadengine.error.kind"] == "conflict"
    assert headers["leadengine.error.event_id"] == "deal-7"
    assert "same identity, different content" in headers["leadengine.error"]
    assert stored_facts(runtime.db) == [["cap-7", "deal-7", "deal-7"]]


def test_two_ingest_processes_sharing_a_routing_queue_both_finish(
    cli_env: dict[str, str], database: dbmod.Database, tmp_path: Path
) -> None:
    """Disjoint leads, one round-robin queue: the loser of a version conflict on the queue
    redoes its batch on fresh reads (it used to die on `event_chain_pkey`)."""
    rules = tmp_path / "race.yaml"
    rules.write_text(RULES)
    env = cli_env | {"LEADENGINE_RULES_FILE": str(rules), "LEADENGINE_BATCH_SIZE": "4"}
    subprocess.run(  # the schema first, so the two do not race to create it
        [sys.executable, "-m", "engine", "db", "init"], env=env, cwd=ROOT, check=True,
        capture_output=True,
    )  # fmt: skip
    files = []
    for n in range(2):
        events = []
        for i in range(60):
            key = f"p{n}-{i:03}"
            events += [
                raw("lead.captured", key, {"email": f"{key}@acme.com"}, days=i / 100),
                raw("touch.form_submitted", key, {"channel": "web"}, days=i / 100),
            ]
        path = tmp_path / f"part-{n}.jsonl"
        path.write_bytes(b"\n".join(lines(*events)))
        files.append((path, events))
    command = [sys.executable, "-m", "engine", "ingest", "--no-project", "--format", "json"]
    procs = [
        subprocess.Popen(
            [*command, str(path)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path, _ in files
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        doc = json.loads(out)
        assert (doc["accepted"], doc["rejected"], doc["conflicts"]) == (120, 0, 0), doc
    every = [e for _, events in files for e in events]
    expected: dict[str, list[str]] = {}
    for e in every:
        expected.setdefault(e["subject"], []).append(e["id"])
    assert stored_facts(database) == sorted(expected.values())  # each event stored once
    assigned = stored(database, "RoutingQueue.Assigned")
    assert [a["turn"] for a in assigned] == list(range(120))
    master = load_master_key(None, None, Path(env["LEADENGINE_HOME"]))
    ids = LeadIds(id_secret(master))  # queues name leads by their (keyed) id, not their key
    assert sorted(a["lead_key"] for a in assigned) == sorted(str(ids(k)) for k in expected)


def test_events_sharing_an_id_across_sources_are_all_projected_and_rebuilt(
    runtime: Runtime,
) -> None:
    from engine.projections.rebuild import rebuild

    def cost(source: str) -> dict[str, Any]:
        data = {"campaign": "spring", "channel": "paid_search", "amount": "100.00",
                "currency": "USD", "period_start": "2026-03-01",
                "period_end": "2026-03-31"}  # fmt: skip
        return {**raw("campaign.cost_recorded", "spring", data, id="1"), "source": source}

    def touch(source: str) -> dict[str, Any]:
        return {**raw("touch.page_viewed", "lead-7", {"channel": "web"}, id="1"), "source": source}

    events = [captured(), touch("crm"), touch("web"), deal("10"), deal("10", source="web")]
    events += [cost("ads"), cost("finance")]
    ingest_lines(lines(*events), origin="a", app=runtime.app, deadletters=runtime.deadletters)

    def rows() -> list[tuple[Any, ...]]:
        s = runtime.db.schema
        with runtime.db.connect() as conn:
            return [
                tuple(conn.execute(f"SELECT source FROM {s}.{t} {w} ORDER BY 1").fetchall())
                for t, w in (
                    ("lead_touchpoints", ""),
                    ("lead_milestones", "WHERE type = 'deal.won'"),
                    ("campaign_costs", ""),
                )
            ]

    expected = [(("crm",), ("web",)), (("crm",), ("web",)), (("ads",), ("finance",))]
    runtime.projector.run()
    assert rows() == expected
    for name in ("touchpoints", "costs"):
        rebuild(runtime.app, runtime.db, name)
    assert rows() == expected


def test_the_ingest_command_counts_conflicts_and_says_where_they_are_kept(
    leadengine: Any, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"\n".join(lines(captured(), deal("1000"))))
    second.write_bytes(b"\n".join(lines(deal("1000"), deal("99999"))))
    code, out = leadengine("ingest", str(first), "--no-project", "--format", "json")
    assert code == 0 and json.loads(out)["conflicts"] == 0
    code, out = leadengine("ingest", str(second), "--no-project", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and (doc["duplicates"], doc["conflicts"], doc["rejected"]) == (1, 1, 0)
    assert doc["dead_letters"] is not None
    code, out = leadengine("ingest", str(second), "--no-project")
    assert code == 0 and "conflicts" in out and "deadletters list" in out
    code, out = leadengine("deadletters", "list", "--format", "json")
    assert code == 0 and "same identity, different content" in out
