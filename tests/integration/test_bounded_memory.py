"""Ingest and projection keep at most `LEADENGINE_CACHE_SIZE` aggregates in memory, whatever
the number of leads, and a small cache changes nothing in what is stored or projected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg import sql

from engine.consumers.lines import LinesReport, ingest_lines
from engine.domain.generator import generate, lines
from engine.domain.rules import Rules
from engine.postgres import db as dbmod
from engine.runtime import Runtime, open_runtime
from engine.services import cache as cache_module
from engine.settings import Settings

CACHE = 25
LEADS = 90  # more leads than the cache holds: aggregates are evicted and read back


@contextmanager
def runtime_with(
    settings: Settings, rules: Rules, cache_size: int, cache_facts: int = 40_000
) -> Iterator[Runtime]:
    """A runtime on a schema of its own; the same home, so the same master key and lead ids."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    assert settings.database_url is not None
    database = dbmod.from_url(settings.database_url.get_secret_value(), schema)
    own = settings.model_copy(
        update={"database_schema": schema, "cache_size": cache_size, "cache_facts": cache_facts}
    )
    try:
        with open_runtime(own, rules=rules, database=database) as rt:
            yield rt
    finally:
        dbmod.drop_schema(database)


def cached(rt: Runtime) -> int:
    cache = rt.app.repository.cache
    assert cache is not None
    return len(cache.cache)


def ingest(rt: Runtime, data: list[bytes], sizes: list[int]) -> LinesReport:
    def watch(_report: LinesReport) -> None:
        sizes.append(cached(rt))

    return ingest_lines(
        data, origin="t", app=rt.app, deadletters=rt.deadletters, batch_size=40, progress=watch
    )


def project(rt: Runtime, sizes: list[int]) -> int:
    rt.projector.batch_size = 97  # many batches, odd boundaries
    return rt.projector.run(progress=lambda _n, _at: sizes.append(len(rt.projector._cache)))


def read_model(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    queries = {  # recorded_at is the wall clock's: left out
        "lead_state": "SELECT lead_key, stage, owner, score, mql_at, sql_at, version "
        "FROM lead_state",
        "lead_touchpoints": "SELECT lead_id, event_id, type, channel, campaign, occurred_at, "
        "position FROM lead_touchpoints",
        "lead_stage_history": "SELECT lead_id, version, from_stage, to_stage, reason, "
        "trigger_event_id, decision, score, occurred_at FROM lead_stage_history",
        "campaign_costs": "SELECT event_id, campaign, channel, amount, currency, period_start "
        "FROM campaign_costs",
    }
    out = {}
    with rt.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(rt.db.schema)))
        for table, query in queries.items():
            out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return out


def test_a_small_cache_bounds_memory_and_changes_nothing(settings: Settings, rules: Rules) -> None:
    data = [line.encode() for line in lines(generate(LEADS, seed=5))]
    with (
        runtime_with(settings, rules, CACHE) as small,
        runtime_with(settings, rules, 10_000) as big,
    ):
        ingest_sizes: list[int] = []
        first = ingest(small, data, ingest_sizes)
        assert first.accepted > 0 and first.rejected == 0
        assert max(ingest_sizes) <= CACHE  # bounded while it ran ...
        assert max(ingest_sizes) == CACHE  # ... and full: leads were evicted along the way
        # every line again, all read back through a cache too small to hold them: all known
        again = ingest(small, data, ingest_sizes)
        assert (again.accepted, again.duplicates) == (0, first.accepted + first.duplicates)
        assert max(ingest_sizes) <= CACHE

        reference = ingest(big, data, [])
        assert reference.as_dict() == first.as_dict()
        assert cached(big) > CACHE  # the reference did hold more than the small cache

        project_sizes: list[int] = []
        small.app.clear_cache()
        done = project(small, project_sizes)
        assert done == small.app.recorder.max_notification_id()
        assert 0 < max(project_sizes) <= CACHE
        project(big, [])
        assert read_model(small) == read_model(big)
        assert read_model(small)["lead_state"]  # something was compared


FACTS = 60  # facts the cached leads may hold in all: a few leads at a time, whatever the count


def test_a_small_fact_budget_bounds_the_weight_and_changes_nothing(
    settings: Settings, rules: Rules
) -> None:
    data = [line.encode() for line in lines(generate(LEADS, seed=6))]
    with (
        runtime_with(settings, rules, 10_000, FACTS) as small,
        runtime_with(settings, rules, 10_000) as big,
    ):
        weights: list[int] = []

        def watch(_report: LinesReport) -> None:
            cache = small.app.repository.cache
            assert cache is not None
            weights.append(cache.cache.total)  # type: ignore[attr-defined]

        first = ingest_lines(
            data,
            origin="t",
            app=small.app,
            deadletters=small.deadletters,
            batch_size=40,
            progress=watch,
        )
        assert first.accepted > 0 and first.rejected == 0
        assert 0 < max(weights) <= FACTS + 40  # the budget, or one lead alone past it
        again = ingest(small, data, [])
        assert (again.accepted, again.duplicates) == (0, first.accepted + first.duplicates)
        assert ingest(big, data, []).as_dict() == first.as_dict()

        small.app.clear_cache()
        small.projector.batch_size = 97
        projected: list[int] = []
        small.projector.run(progress=lambda _n, _at: projected.append(small.projector._cache.total))
        assert 0 < max(projected) <= FACTS + 40
        assert len(small.projector._cache) < LEADS  # leads were evicted by weight, not count
        project(big, [])
        assert read_model(small) == read_model(big)
        assert read_model(small)["lead_state"]


def account_model(rt: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """The account tables the projector's AccountBook settles (one row per lead seen)."""
    queries = {
        "account_signals": "SELECT lead_id, named_account, email_domain, company, "
        "last_activity, last_event_id, engagement, persona FROM account_signals",
        "account_members": "SELECT lead_id, account_key, rule, reason, candidates, decided_at, "
        "rules_version FROM account_members",
        "account_scores": "SELECT account_key, fit, engagement, score, members, points, "
        "mqa_at, mqa_trigger FROM account_scores",
    }
    out = {}
    with rt.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(rt.db.schema)))
        for table, query in queries.items():
            out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return out


PER_LEAD_LEADS = 60  # more than CACHE; fewer than LEADS, for time (two ingests, two projections)


def test_small_per_lead_caches_change_nothing(
    settings: Settings, rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lead keys and lead ids are cached per lead, as many as the aggregate cache holds
    (never fewer than one projector batch's leads, `PER_LEAD_FLOOR`): with the floor taken away
    they hold `CACHE` of 60 leads, are evicted and read or derived again, and everything stored
    and projected (the account tables too) is what a big cache gives."""
    monkeypatch.setattr(cache_module, "PER_LEAD_FLOOR", 1)
    data = [line.encode() for line in lines(generate(PER_LEAD_LEADS, seed=7))]
    with (
        runtime_with(settings, rules, CACHE) as small,
        runtime_with(settings, rules, 10_000) as big,
    ):
        keys = small.app.keys
        key_sizes: list[int] = []
        first = ingest_lines(
            data,
            origin="t",
            app=small.app,
            deadletters=small.deadletters,
            batch_size=40,
            progress=lambda _r: key_sizes.append(len(keys._cache)),
        )
        assert first.accepted > 0 and first.rejected == 0
        assert max(key_sizes) == CACHE  # full, so keys were evicted along the way
        ids = small.app.lead_id._derive.cache_info()  # type: ignore[attr-defined]
        assert ids.maxsize == CACHE and ids.currsize == CACHE
        assert ingest(big, data, []).as_dict() == first.as_dict()
        assert len(big.app.keys._cache) > CACHE  # the reference held more

        small.app.clear_cache()
        project(small, [])
        assert len(keys._cache) <= CACHE
        project(big, [])
        assert read_model(small) == read_model(big)
        accounts = account_model(small)
        assert accounts == account_model(big)
        assert accounts["account_members"] and accounts["account_signals"]
