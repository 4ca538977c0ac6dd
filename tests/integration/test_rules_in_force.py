"""`<schema>_read.rules_in_force`: which rules the projector applied to the current-state rows,
from which log position and when, as a reporting login reads it. A rules file changed in
content (even under the same version) starts a new row; the same rules again add none."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine.domain.generator import generate
from engine.domain.rules import parse_rules
from engine.readmodel import read_schema
from engine.runtime import Runtime
from engine.settings import get_settings
from tests.integration.conftest import reader_login

COLUMNS = (
    "rules_version, rules_hash, from_position, applied_from, applied_until, in_force, "
    "mql_rule, sla_first_touch_types, sla_business_hours, attribution_exclude_types, rules"
)


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _hash(text: str, source: str) -> str:
    document = parse_rules(text, source=source).model_dump(mode="json")
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def test_rules_in_force_name_each_rules_set_from_when(
    runtime: Runtime,
    leadengine: Any,
    tmp_path: Path,
    server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = list(generate(40, seed=21))
    half = len(events) // 2
    assert leadengine("ingest", str(_write(tmp_path / "a.jsonl", events[:half])))[0] == 0
    assert leadengine("project")[0] == 0
    assert leadengine("project")[0] == 0  # nothing new: no second row
    first_head = runtime.projector.position()
    assert first_head > 0

    default = resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")
    stricter = default.replace("  total_at_least: 50\n", "  total_at_least: 70\n", 1)
    assert stricter != default
    path = tmp_path / "stricter.yaml"
    path.write_text(stricter)
    monkeypatch.setenv("LEADENGINE_RULES_FILE", str(path))
    get_settings.cache_clear()
    assert leadengine("ingest", str(_write(tmp_path / "b.jsonl", events[half:])))[0] == 0
    assert leadengine("project")[0] == 0
    assert leadengine("project")[0] == 0

    read = sql.Identifier(read_schema(runtime.db.schema))
    with reader_login(runtime.db, server_url) as reader:
        rows = reader.execute(
            sql.SQL("SELECT " + COLUMNS + " FROM {}.rules_in_force ORDER BY applied_from").format(
                read
            )
        ).fetchall()
    assert len(rows) == 2
    old, new = rows
    assert old[0] == new[0] == "default@2026.1"  # same version, different content:
    assert old[1] == _hash(default, "default") and new[1] == _hash(stricter, "stricter")
    assert old[1] != new[1]
    assert old[2] == 1 and new[2] == first_head + 1
    assert old[4] == new[3] and new[4] is None  # one period ends where the next begins
    assert (old[5], new[5]) == (False, True)
    assert old[6]["total_at_least"] == 50 and new[6]["total_at_least"] == 70
    rules = parse_rules(stricter, source="stricter")
    assert rules.sla is not None
    assert new[7] == list(rules.sla.first_touch_types)
    assert new[8]["timezone"] == rules.sla.business_hours.timezone
    assert new[9] == list(rules.attribution.exclude_types)
    assert new[10] == rules.model_dump(mode="json")
