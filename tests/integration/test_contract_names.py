"""One name per concept in the read contract: the new names answer what the old ones (kept as
aliases for one contract version) answer, row for row; touches say their arrival order and
whether a sales rep made them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from engine.domain.contract import TOUCH_TYPES
from engine.projections.registry import SALES_TOUCH_TYPES
from engine.readmodel import read_schema
from engine.runtime import Runtime
from tests.integration.conftest import load_for_readers, reader_login

#: (view, alias, new name)
ALIASES = (
    ("lead_milestones", "actor", "rep"),
    ("lead_scores", "as_of", "scored_at"),
    ("lead_sla", "first_touch_at", "first_sales_touch_at"),
    ("lead_sla", "first_touch_due", "first_sales_touch_due"),
)


@pytest.fixture
def projected(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    load_for_readers(leadengine, tmp_path, 80, 8)
    return runtime


def test_new_names_answer_what_the_aliases_answer(projected: Runtime, server_url: str) -> None:
    read = sql.Identifier(read_schema(projected.db.schema))
    with reader_login(projected.db, server_url) as reader:
        for view, old, new in ALIASES:
            row = reader.execute(
                sql.SQL(
                    "SELECT count(*), count({n}), count(*) FILTER (WHERE {o} IS DISTINCT FROM {n}) "
                    "FROM {r}.{v}"
                ).format(
                    o=sql.Identifier(old),
                    n=sql.Identifier(new),
                    r=read,
                    v=sql.Identifier(view),
                )
            ).fetchone()
            assert row is not None
            _, filled, differ = row
            assert filled > 0 and differ == 0, (view, old, new, row)
            comment = reader.execute(
                "SELECT col_description(to_regclass(%s), a.attnum) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attname = %s",
                (f"{read_schema(projected.db.schema)}.{view}",) * 2 + (old,),
            ).fetchone()
            assert comment is not None and f"use `{new}`" in comment[0]


def test_touches_say_their_arrival_order_and_who_made_them(
    projected: Runtime, server_url: str
) -> None:
    assert set(SALES_TOUCH_TYPES) == {
        "touch.call_logged",
        "touch.meeting_booked",
        "touch.meeting_held",
    }
    assert set(SALES_TOUCH_TYPES) < set(TOUCH_TYPES)
    read = sql.Identifier(read_schema(projected.db.schema))
    with reader_login(projected.db, server_url) as reader:
        flags = dict(
            reader.execute(
                sql.SQL("SELECT sales_touch, count(*) FROM {}.lead_touchpoints GROUP BY 1").format(
                    read
                )
            ).fetchall()
        )
        assert flags.get(True, 0) > 0 and flags.get(False, 0) > 0
        wrong = reader.execute(
            sql.SQL(
                "SELECT count(*) FROM {}.lead_touchpoints WHERE sales_touch <> (type = ANY(%s))"
            ).format(read),
            (list(SALES_TOUCH_TYPES),),
        ).fetchone()
        assert wrong == (0,)
        # arrival order: the notification id, one per touch
        row = reader.execute(
            sql.SQL(
                "SELECT count(*), count(DISTINCT position), "
                "count(*) FILTER (WHERE position <= 0) FROM {}.lead_touchpoints"
            ).format(read)
        ).fetchone()
        assert row is not None and row[0] == row[1] and row[2] == 0
