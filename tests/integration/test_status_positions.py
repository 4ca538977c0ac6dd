"""`status` reads the positions of its own topic only: `kafka.<topic>.<partition>` exactly, not
those of a topic whose name starts the same (`leads` beside `leads.eu`, the demo's
`<topic>.demo-<run>`), nor LIKE wildcards in the name (issue 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg import sql

from engine.runtime import Runtime
from engine.services.application import TRACKING_TABLE
from engine.settings import get_settings

ROWS = {
    "kafka.leads.0": 10,
    "kafka.leads.1": 20,
    "kafka.leads.eu.1": 5,
    "kafka.leads.demo-1cd1f576.1": 7,
    "kafka.lead_s.4": 1,
    "kafka.leadXs.2": 3,
    "kafka.leads.": 9,
}


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("leads", {0: 10, 1: 20}),
        ("leads.eu", {1: 5}),
        ("lead_s", {4: 1}),
        ("leads.demo-1cd1f576", {1: 7}),
        ("lead%", {}),
    ],
)
def test_status_reads_exactly_its_topics_positions(
    runtime: Runtime,
    leadengine: Any,
    monkeypatch: pytest.MonkeyPatch,
    topic: str,
    expected: dict[int, int],
) -> None:
    with runtime.db.connect() as conn:
        conn.cursor().executemany(
            sql.SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)").format(
                sql.Identifier(runtime.db.schema, TRACKING_TABLE)
            ),
            list(ROWS.items()),
        )
    monkeypatch.setenv("LEADENGINE_KAFKA_TOPIC", topic)
    monkeypatch.delenv("LEADENGINE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    get_settings.cache_clear()
    code, out = leadengine("status", "--format", "json")
    assert code == 0, leadengine.stderr
    found = {p["partition"]: p["stored_position"] for p in json.loads(out)["partitions"]}
    assert found == expected
    assert leadengine("status", "--check")[0] == 0
