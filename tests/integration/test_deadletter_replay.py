"""`deadletters replay | purge` on a real PostgreSQL: fixed records land, the rest stay kept."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine.analytics import queries as reports
from engine.domain.errors import InvalidEvent
from engine.postgres.deadletters import DeadLetter
from engine.runtime import Runtime
from engine.services.deadletter_replay import dry_run
from engine.settings import Settings
from tests.factory import line, raw

EMAIL = "pat.replay@acme.example"


def _rows(runtime: Runtime) -> dict[str, dict[str, Any]]:
    return {d["origin"]: d for d in runtime.deadletters.latest(100)}


def _ingest_with_rejects(runtime: Runtime, leadengine: Any, tmp_path: Path) -> dict[str, int]:
    """A file with a good lead, an unknown event type and a conflict; plus a row that a past
    bug refused although its bytes are valid. Returns the dead-letter ids by what they hold."""
    first = raw("lead.captured", "k-ok", {"email": "ok@acme.example"}, id="e-1")
    lines = [
        line(first),
        line({**raw("touch.page_viewed", "k-ok", {"channel": "web"}, id="e-2"), "type": "x.y"}),
        line({**first, "data": {"email": "other@acme.example"}}),  # same (source, id): conflict
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, _ = leadengine("ingest", str(path))
    assert code in (0, 1)  # done; 1 once ingest reports rejected lines
    fixable = line(raw("lead.captured", "k-fixed", {"email": EMAIL}, id="e-9"))
    runtime.deadletters.add(
        [DeadLetter("file:old.jsonl:7", fixable, InvalidEvent("refused by a since-fixed bug"))]
    )
    rows = _rows(runtime)
    assert len(rows) == 3
    return {
        "unknown": rows[f"file:{path}:2"]["id"],
        "conflict": rows[f"file:{path}:3"]["id"],
        "fixable": rows["file:old.jsonl:7"]["id"],
    }


def _set_reason(runtime: Runtime, row_id: int, reason: str) -> None:
    with runtime.db.connect() as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET error = %s WHERE id = %s").format(
                sql.Identifier(runtime.db.schema, "dead_letters")
            ),
            (reason, row_id),
        )


def test_replay_stores_what_passes_now_and_keeps_the_rest_with_the_new_reason(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    ids = _ingest_with_rejects(runtime, leadengine, tmp_path)
    _set_reason(runtime, ids["unknown"], "an old reason")
    leads_before = reports.funnel(runtime.db)["leads_total"]

    code, out = leadengine("deadletters", "replay", "--all", "--dry-run", "--format", "json")
    assert code == 1, out  # one still fails the contract
    assert json.loads(out) == {
        "selected": 3,
        "would_retry": 2,
        "still_invalid": 1,
        "missing_ids": [],
    }
    assert len(_rows(runtime)) == 3  # the dry run changed nothing
    assert _rows(runtime)["file:old.jsonl:7"]["error"].startswith("refused by a since-fixed bug")

    code, out = leadengine("deadletters", "replay", "--all", "--format", "json")
    assert code == 1, out
    doc = json.loads(out)
    assert {k: doc[k] for k in ("selected", "stored", "duplicates", "still_rejected")} == {
        "selected": 3,
        "stored": 1,
        "duplicates": 0,
        "still_rejected": 2,
    }
    assert doc["projected"] >= 1
    kept = {d["id"]: d for d in runtime.deadletters.latest(100)}
    assert set(kept) == {ids["unknown"], ids["conflict"]}  # the stored one's row is deleted
    unknown = kept[ids["unknown"]]["error"]
    assert "unknown event type 'x.y'" in unknown and "old reason" not in unknown
    assert kept[ids["unknown"]]["field"] == "type"
    assert "conflicts with the stored event" in kept[ids["conflict"]]["error"]
    assert json.loads(kept[ids["conflict"]]["raw"])["data"]["email"] == "other@acme.example"
    assert runtime.app.get_lead("k-fixed").key == "k-fixed"
    assert reports.funnel(runtime.db)["leads_total"] == leads_before + 1  # projected

    logs = "".join(leadengine.stderr)
    assert "dead letters replayed" in logs
    assert EMAIL not in logs and "other@acme.example" not in logs  # never the payload

    code, out = leadengine("deadletters", "replay", "--all", "--format", "json")
    assert code == 1 and json.loads(out)["stored"] == 0  # a second run stores nothing more


def test_a_dry_run_reads_unknown_fields_as_the_rules_say(runtime: Runtime) -> None:
    """Under `contract: {unknown_fields: reject}` the dry run refuses what the replay would."""
    extra = line(raw("touch.page_viewed", "k-x", {"channel": "web", "utm_term": "q"}, id="u-1"))
    runtime.deadletters.add([DeadLetter("file:x.jsonl:1", extra, InvalidEvent("refused"))])
    kept = dry_run(runtime.deadletters, None, max_bytes=1 << 18)
    strict = dry_run(runtime.deadletters, None, max_bytes=1 << 18, unknown_fields="reject")
    assert (kept.would_retry, kept.still_invalid) == (1, 0)
    assert (strict.would_retry, strict.still_invalid) == (0, 1)


def test_replay_by_id_touches_only_those_rows_and_names_missing_ids(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    ids = _ingest_with_rejects(runtime, leadengine, tmp_path)
    code, out = leadengine(
        "deadletters", "replay", "--id", str(ids["fixable"]), "--id", "99999", "--format", "json"
    )
    assert code == 1, out  # done, but an id had no row
    doc = json.loads(out)
    assert doc["stored"] == 1 and doc["selected"] == 1 and doc["missing_ids"] == [99999]
    assert {d["id"] for d in runtime.deadletters.latest(100)} == {ids["unknown"], ids["conflict"]}

    code, out = leadengine("deadletters", "replay", "--id", "0")
    assert code == 2


def test_purge_deletes_by_id_age_or_all_and_dry_run_deletes_nothing(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    ids = _ingest_with_rejects(runtime, leadengine, tmp_path)

    code, out = leadengine("deadletters", "purge", "--all", "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["matched"] == 3 and json.loads(out)["deleted"] == 0
    assert runtime.deadletters.count() == 3

    code, out = leadengine("deadletters", "purge", "--id", str(ids["conflict"]), "--format", "json")
    assert code == 0 and json.loads(out)["deleted"] == 1
    assert ids["conflict"] not in {d["id"] for d in runtime.deadletters.latest(100)}

    code, out = leadengine("deadletters", "purge", "--before", "2000-01-01", "--format", "json")
    assert code == 0 and json.loads(out)["deleted"] == 0  # all received today

    code, out = leadengine("deadletters", "purge", "--before", "2999-01-01T00:00:00Z")
    assert code == 0 and runtime.deadletters.count() == 0

    code, _ = leadengine("deadletters", "purge", "--before", "last tuesday")
    assert code == 2
    logs = "".join(leadengine.stderr)
    assert logs.count("dead letters purged") == 4
    assert EMAIL not in logs


@pytest.mark.parametrize("argv", [("replay",), ("purge",), ("replay", "--id", "1", "--all")])
def test_a_selection_is_required_and_exclusive(argv: tuple[str, ...], leadengine: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        leadengine("deadletters", *argv)
    assert exc.value.code == 2


def test_kafka_replay_resends_the_dlq_once_with_key_and_headers(
    runtime: Runtime,
    leadengine: Any,
    kafka_settings: Settings,
    kafka_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from confluent_kafka import Producer

    from engine.consumers.kafka import KafkaIngestor
    from engine.settings import get_settings
    from tests.kafka_helpers import read_topic

    for k, v in kafka_env.items():
        if k.startswith("LEADENGINE_KAFKA_"):
            monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    bootstrap, topic = str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic
    dlq = kafka_settings.dlq_topic

    def consume() -> dict[str, Any]:
        ingestor = KafkaIngestor(runtime.app, kafka_settings)
        return ingestor.run(stop=threading.Event(), until_caught_up=True).as_dict()

    # a record the consumer refuses for good (unknown type) reaches the .dlq topic for real
    bad = {**raw("touch.page_viewed", "k-bad", {"channel": "web"}, id="b-1"), "type": "x.y"}
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k-bad", value=line(bad))
    assert producer.flush(30) == 0
    assert consume()["dead_lettered"] == 1
    # and one a past bug refused although it is valid, as the consumer would have kept it
    fixable = line(raw("lead.captured", "k-fixed", {"email": EMAIL}, id="f-1"))
    reason = [("leadengine.error", b"refused by a since-fixed bug"), ("leadengine.x", b"1")]
    producer.produce(dlq, key=b"k-fixed", value=fixable, headers=[("trace", b"t1"), *reason])
    assert producer.flush(30) == 0
    assert len(read_topic(bootstrap, dlq, expect=2)) == 2

    code, out = leadengine(
        "deadletters", "replay", "--kafka", "--all", "--dry-run", "--format", "json"
    )
    assert code == 1, out  # the unknown type still fails
    assert {k: json.loads(out)[k] for k in ("read", "sent", "still_invalid")} == {
        "read": 2,
        "sent": 1,
        "still_invalid": 1,
    }
    assert len(read_topic(bootstrap, topic, expect=1, timeout=3)) == 1  # nothing sent

    code, out = leadengine("deadletters", "replay", "--kafka", "--all", "--format", "json")
    assert code == 1, out
    assert json.loads(out)["sent"] == 1
    resent = [r for r in read_topic(bootstrap, topic, expect=2) if r.key == b"k-fixed"]
    assert len(resent) == 1
    assert resent[0].value == fixable and resent[0].headers == [("trace", b"t1")]
    assert consume()["accepted"] == 1
    assert runtime.app.get_lead("k-fixed").key == "k-fixed"

    code, out = leadengine("deadletters", "replay", "--kafka", "--all", "--format", "json")
    assert code == 0, out  # the stored position: nothing read, nothing sent again
    assert json.loads(out)["read"] == 0 and json.loads(out)["sent"] == 0

    code, out = leadengine(
        "deadletters", "replay", "--kafka", "--all", "--from-start", "--format", "json"
    )
    assert code == 1 and json.loads(out)["sent"] == 1
    again = consume()
    assert again["accepted"] == 0 and again["duplicates"] == 1  # identity dedupes the re-send

    code, _ = leadengine("deadletters", "replay", "--kafka", "--id", "1")
    assert code == 2
    logs = "".join(leadengine.stderr)
    assert logs.count("dead letters replayed") == 4 and EMAIL not in logs
