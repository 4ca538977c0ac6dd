"""bench/scale_log.py's fast log (lead shares in parallel processes, big batches, the log
without accounts copied whole and the accounts ingested on top) is, for `projections rebuild`
and `verify`, the same log as its events ingested normally (one consumer, time order,
accounts first, batches of 500)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.domain.contract import validate_event
from engine.postgres import db as dbmod
from engine.postgres.verify import verify
from engine.projections.projector import PROJECTIONS
from engine.projections.rebuild import rebuild
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import scale_log

ACCOUNTS, SEED = 24, 5


#: when the engine stored an event: the clock of the ingest, so it differs between two logs
#: of the same events (compared as present, not by value)
CLOCK_COLUMNS = {"recorded_at"}
#: a notification id: the interleaving of different leads' events differs (compared as the
#: event it names, its aggregate and version)
POSITION_COLUMNS = {"position"}


def rows(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection's table, sorted (the rebuild's output); clock columns as whether set,
    positions as the event they name."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with rt.db.connect() as conn:
        log = sql.SQL(
            "SELECT notification_id, originator_id, originator_version FROM {}"
        ).format(sql.Identifier(rt.db.schema, "leadengine_events"))
        event_at = {n: (i, v) for n, i, v in conn.execute(log).fetchall()}
        for tables in PROJECTIONS.values():
            for table in tables:
                query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(rt.db.schema, table))
                cur = conn.execute(query)
                names = [d.name for d in cur.description or ()]
                out[table] = sorted(
                    (
                        tuple(
                            (v is not None)
                            if name in CLOCK_COLUMNS
                            else (event_at[v] if name in POSITION_COLUMNS and v else v)
                            for v, name in zip(row, names, strict=True)
                        )
                        for row in cur.fetchall()
                    ),
                    key=repr,
                )
    return out


def rebuilt(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    for name in PROJECTIONS:
        rebuild(rt.app, rt.db, name)
    return rows(rt)


def seen_by_verify(db: dbmod.Database) -> dict[str, Any]:
    report = verify(db)
    return {
        "ok": report.ok,
        "breaks": report.breaks,
        "events": report.events,
        "aggregates": report.aggregates,
        "unchained": report.unchained_aggregates,
        "gaps": report.notification_gaps,
    }


@pytest.fixture
def fast_log(server_root: str, settings: Settings) -> Any:
    """`<prefix>_plain` and `<prefix>_accounts`, made the fast way with the test's master key
    (so lead ids, keyed hashes of the keys, are the same as the normal log's)."""
    prefix = f"le_t_scale_{uuid.uuid4().hex[:10]}"
    scale_log.make(
        server_root, prefix, ACCOUNTS, SEED, workers=2, batch=70, home=str(settings.home)
    )
    yield {
        variant: make_conninfo(
            **(conninfo_to_dict(server_root) | {"dbname": f"{prefix}_{variant}"})
        )
        for variant in ("plain", "accounts")
    }
    scale_log.drop(server_root, prefix)


@pytest.mark.timeout(900)
def test_the_fast_log_rebuilds_and_verifies_as_the_normal_one(
    runtime: Runtime, settings: Settings, fast_log: dict[str, str]
) -> None:
    events = scale_log.normal_order(ACCOUNTS, SEED)
    for i in range(0, len(events), 500):
        result = runtime.app.ingest([validate_event(e) for e in events[i : i + 500]])
        assert not result.rejected
    expected = rebuilt(runtime)
    expected_verify = seen_by_verify(runtime.db)
    with runtime.db.connect() as conn:
        on_accounts = conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE topic LIKE %s").format(
                sql.Identifier(runtime.db.schema, "leadengine_events")
            ),
            ("engine.aggregates.account:%",),
        ).fetchone()[0]
    assert on_accounts >= ACCOUNTS
    assert expected_verify["ok"] and expected_verify["events"] > len(events)  # decisions too
    assert len(expected["account_state"]) == ACCOUNTS
    assert len(expected["lead_state"]) == ACCOUNTS * scale_log.LEADS_PER_ACCOUNT
    # the book routes nobody (the fast way's premise: no order-dependent shared aggregate)
    assert not expected["lead_routing"]

    url = fast_log["accounts"]
    fast_settings = settings.model_copy(update={"database_url": url, "database_schema": "scale"})
    database = dbmod.from_url(url, scale_log.SCHEMA)
    with open_runtime(fast_settings, database=database) as fast:
        got = rebuilt(fast)
        got_verify = seen_by_verify(fast.db)
    assert got_verify == expected_verify
    assert got.keys() == expected.keys()
    for table in expected:
        for a, b in zip(got[table], expected[table], strict=True):
            diff = [(i, x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
            assert not diff, (table, a[:2], diff)

    # the log without accounts: the same leads, no account, intact
    url = fast_log["plain"]
    plain_settings = settings.model_copy(update={"database_url": url, "database_schema": "scale"})
    with open_runtime(plain_settings, database=dbmod.from_url(url, scale_log.SCHEMA)) as plain:
        plain_rows = rebuilt(plain)
        plain_verify = seen_by_verify(plain.db)
    assert plain_verify["ok"]
    assert plain_verify["events"] == expected_verify["events"] - on_accounts
    assert plain_rows["lead_state"] == expected["lead_state"]
    assert not plain_rows["account_state"]
