"""Issue 13's poison records, one by one, on a real PostgreSQL and a real broker: each is
refused at the door with a specific reason and kept, the records around it still land, and
every projection reaches the end of the log; amounts and counts the contract accepts are
projected exactly (migration 4 widened the money columns)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from psycopg import sql

from engine.consumers.kafka import KafkaIngestor
from engine.consumers.lines import ingest_lines
from engine.postgres import migrations
from engine.postgres.db import Database
from engine.runtime import Runtime
from engine.settings import Settings
from tests.factory import line, raw
from tests.kafka_helpers import read_topic, stored_facts

ROOT = Path(__file__).resolve().parents[2]
DEEP = ('{"specversion": "1.0", "ext": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()


def _won(subject: str, amount: str, **kw: Any) -> dict[str, Any]:
    return raw("deal.won", subject, {"amount": amount, "currency": "IDR"}, **kw)


def _poison() -> list[tuple[bytes, str, str | None]]:
    """(record, what the reason says, the field it names) for every bullet of the issue."""
    page = raw("touch.page_viewed", "p-1", {"channel": "web"}, id="p-base")
    return [
        (line({**page, "subject": "lead\u0000x", "id": "n1"}), "U+0000", "subject"),
        (line({**page, "id": "n2\u0000"}), "U+0000", "id"),
        (line({**page, "id": "n3", "data": {"channel": "w\u0000b"}}), "U+0000", "data.channel"),
        (line({**page, "id": "n4", "ext": {"k": ["\u0000"]}}), "U+0000", "ext.k.0"),
        (line({**page, "id": "s1", "subject": "\ud800"}), "U+D800", "subject"),
        (
            line({**page, "id": "s2", "data": {"channel": "web", "\udc80": 1}}),
            "U+DC80",
            "data.\\udc80",
        ),
        (line(_won("p-1", "1000000000000000", id="big1")), "less than", "data.amount"),
        (line(_won("p-1", "12.345", id="big2")), "2 decimal places", "data.amount"),
        (
            line(raw("lead.profile_updated", "p-1", {"employees": 2**31}, id="emp")),
            "less than or equal to 2147483647",
            "data.employees",
        ),
        (line({**page, "id": "t1", "time": "9999-12-31T23:59:59-05:00"}), "time", "time"),
        (line({**page, "id": "t2", "time": "0001-01-01T00:30:00+01:00"}), "time", "time"),
        (line({**page, "id": "t3", "time": 1700000000}), "RFC 3339", "time"),
        (DEEP, "nested deeper than 32", None),
        (b'{"id": "d1", "n": ' + b"7" * 5000 + b"}", "number literal of 5000", None),
        (line({**page, "id": "   "}), "blank", "id"),
        (line({**page, "id": "b2", "subject": " \t "}), "blank", "subject"),
    ]


def _good() -> list[bytes]:
    return [
        line(raw("lead.captured", "p-1", {"email": "p1@example.id"}, id="g1")),
        line(raw("lead.profile_updated", "p-1", {"employees": 2**31 - 1}, id="g2")),
        line(raw("opportunity.opened", "p-1", {"amount": "12500000000", "currency": "IDR"})),
        line(_won("p-1", "999999999999999.99", id="g4")),
        line(_won("p-1", "999999999999999.99", id="g5")),  # the lead's sum is 2e15
        line({**raw("touch.page_viewed", "p-1", {"channel": "web"}, id="g6"), "x\u0001": "ok"}),
        line(
            raw(
                "campaign.cost_recorded",
                "camp-1",
                {
                    "amount": "250000000000000",
                    "currency": "VND",
                    "campaign": "tet",
                    "channel": "paid_social",
                    "period_start": "2026-01-01",
                    "period_end": "2099-12-31",
                },
                id="c1",
            )
        ),
    ]


def _projections_at_head(runtime: Runtime) -> None:
    head = runtime.app.recorder.max_notification_id()
    assert head and set(runtime.projector.positions().values()) == {head}


POISON = _poison()


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    POISON,
    ids=[f"{i}-{field or reason[:20]}" for i, (_, reason, field) in enumerate(POISON)],
)
def test_a_poison_record_is_dead_lettered_and_the_rest_is_stored_and_projected(
    runtime: Runtime, record: bytes, reason: str, field: str | None
) -> None:
    good = _good()
    report = ingest_lines(
        [good[0], record, *good[1:]],
        origin="file:poison",
        app=runtime.app,
        deadletters=runtime.deadletters,
    )
    assert (report.rejected, report.accepted) == (1, len(good))
    [letter] = runtime.deadletters.latest(10)
    assert letter["origin"] == "file:poison:2"
    assert reason in letter["error"], letter["error"]
    assert letter["field"] == field, letter
    assert letter["raw"] == record.decode("utf-8", "replace")
    assert runtime.projector.run(until_caught_up=True) > 0
    _projections_at_head(runtime)


def test_amounts_and_counts_the_contract_accepts_are_projected_exactly(runtime: Runtime) -> None:
    good = _good()
    report = ingest_lines(
        good, origin="file:good", app=runtime.app, deadletters=runtime.deadletters
    )
    assert report.accepted == len(good)
    assert runtime.projector.run(until_caught_up=True) > 0
    _projections_at_head(runtime)
    s = runtime.db.schema
    with runtime.db.connect() as conn:
        state = conn.execute(
            sql.SQL("SELECT employees, won_amount FROM {} WHERE lead_id = %s").format(
                sql.Identifier(s, "lead_state")
            ),
            (runtime.app.lead_id("p-1"),),
        ).fetchone()
        amounts = conn.execute(
            sql.SQL("SELECT event_id, amount FROM {} WHERE amount IS NOT NULL").format(
                sql.Identifier(s, "lead_milestones")
            )
        ).fetchall()
        cost = conn.execute(
            sql.SQL("SELECT amount, period_end FROM {}").format(sql.Identifier(s, "campaign_costs"))
        ).fetchone()
    assert state == (2**31 - 1, Decimal("1999999999999999.98"))
    assert {Decimal("999999999999999.99"), Decimal("12500000000")} == {a for _, a in amounts}
    assert cost is not None and cost[0] == Decimal("250000000000000")


def test_publish_reports_invalid_lines_by_number_and_sends_the_rest(
    kafka_env: dict[str, str], kafka_settings: Settings, tmp_path: Path
) -> None:
    poison = [p for p, _, _ in _poison()]
    good = _good()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([*good, *poison]) + b"\n")
    proc = _cli(kafka_env, "publish", str(path), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["sent"] == len(good)
    assert json.loads(proc.stdout)["rejected"] == len(poison)
    for number in range(len(good) + 1, len(good) + len(poison) + 1):
        assert f"line {number}: not sent" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_that_stops_part_way_says_which_lines_went_out(
    kafka_env: dict[str, str], kafka_settings: Settings, tmp_path: Path
) -> None:
    good = _good()
    too_big = json.dumps({"pad": "x" * (2 * 1024 * 1024), "subject": "p-1"}).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([good[0], good[1], too_big, good[2]]) + b"\n")
    proc = _cli(kafka_env, "publish", "--no-validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "publish stopped at line 3" in proc.stderr
    assert "2 were handed to the producer" in proc.stderr
    assert "resume from line 3" in proc.stderr
    assert "Traceback" not in proc.stderr
    records = read_topic(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, 2)
    assert sorted(r.value for r in records) == sorted(good[:2])


def test_consume_dead_letters_poison_and_the_partitions_move_on(
    runtime: Runtime, kafka_settings: Settings
) -> None:
    bootstrap = str(kafka_settings.kafka_bootstrap_servers)
    topic = kafka_settings.kafka_topic
    poison, good = _poison(), _good()
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    for record in [good[0], *[p for p, _, _ in poison], *good[1:]]:
        producer.produce(topic, key=b"p-1", value=record)  # one partition, in this order
    assert producer.flush(30) == 0

    ingestor = KafkaIngestor(runtime.app, kafka_settings)
    stats = ingestor.run(stop=threading.Event(), until_caught_up=True).as_dict()
    assert stats["dead_lettered"] == len(poison)
    assert stats["accepted"] == len(good)
    letters = read_topic(bootstrap, kafka_settings.dlq_topic, expect=len(poison))
    by_value = {r.value: {k: v.decode() for k, v in r.headers} for r in letters}
    for record, reason, field in poison:
        headers = by_value[record]
        assert reason in headers["leadengine.error"], headers
        assert headers["leadengine.error.field"] == (field or "")
    # the campaign is not a lead
    assert [len(ids) for ids in stored_facts(runtime.db)] == [len(good) - 1]
    runtime.projector.run(until_caught_up=True)
    _projections_at_head(runtime)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _column_types(db: Database) -> dict[tuple[str, str], str]:
    query = (
        "SELECT table_name, column_name, numeric_precision, numeric_scale "
        "FROM information_schema.columns WHERE table_schema = %s AND table_name = ANY(%s) "
        "AND column_name = ANY(%s)"
    )
    tables = sorted({t for t, _, _ in migrations.WIDER_AMOUNTS})
    columns = sorted({c for _, c, _ in migrations.WIDER_AMOUNTS})
    with db.connect() as conn:
        rows = conn.execute(query, (db.schema, tables, columns)).fetchall()
    return {(t, c): f"numeric({p},{s})" for t, c, p, s in rows}


def test_migration_4_widens_the_money_columns_of_a_schema_made_by_the_previous_version(
    fresh_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = fresh_database  # built by the first three migrations only, here
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
    # today's contract and KPI views read columns and tables later migrations add (lead_person:
    # migration 14): made after the last one
    monkeypatch.setattr(migrations, "ensure_contract", lambda conn, schema: False)
    monkeypatch.setattr(migrations, "create_views", lambda conn, schema: None)
    migrations.migrate(database)
    wanted = {(t, c): kind for t, c, kind in migrations.WIDER_AMOUNTS}
    assert set(_column_types(database).values()) == {"numeric(14,2)", "numeric(18,4)"}
    with database.connect() as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (event_id, campaign, channel, amount, currency, period_start, "
                "period_end, recorded_at) VALUES ('c0', 'x', 'y', 12.5, 'EUR', '2026-01-01', "
                "'2026-01-31', now())"
            ).format(sql.Identifier(database.schema, "campaign_costs"))
        )
    monkeypatch.undo()
    applied = migrations.migrate(database)
    assert [m.version for m in applied] == [m.version for m in migrations.MIGRATIONS[3:]]
    assert _column_types(database) == wanted
    with database.connect() as conn:
        read = sql.Identifier(f"{database.schema}_read")
        assert conn.execute(
            sql.SQL("SELECT amount FROM {}.campaign_costs").format(read)
        ).fetchall() == [(Decimal("12.50"),)]
        for view in ("kpi_funnel", "kpi_cost_per_stage"):
            assert conn.execute(
                "SELECT to_regclass(%s)", (f"{database.schema}.{view}",)
            ).fetchone() != (None,)
    assert migrations.migrate(database) == []  # idempotent: nothing left to apply
