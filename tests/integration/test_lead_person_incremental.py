"""`lead_person` is kept incrementally (each batch folds again only the people of its links'
ends): any links, merges and unmerges, in any batches, give the rows the whole fold gives and
the people engine/stitching folds."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.projections import identity
from engine.runtime import Runtime
from engine.stitching.identity_map import IdentityMap, Link
from tests.integration.test_stitching import links_strategy


def rows(cur: Any, schema: str) -> set[tuple[Any, ...]]:
    table = sql.Identifier(schema, "lead_person")
    return set(cur.execute(sql.SQL("SELECT lead_id, person_id, leads FROM {}").format(table)))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=links_strategy, cuts=st.lists(st.integers(0, 12), max_size=4))
def test_incremental_people_are_the_whole_folds(
    runtime: Runtime, drawn: list[Link], cuts: list[int]
) -> None:
    schema = runtime.db.schema
    links = sql.Identifier(schema, "identity_links")
    bounds = sorted({0, len(drawn), *(c for c in cuts if c < len(drawn))})
    with runtime.db.connect() as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}").format(links))
        identity.refresh(cur, schema)
        for start, end in pairwise(bounds):
            batch = drawn[start:end]
            for n, link in enumerate(batch, start):
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (lead_id, source, event_id, kind, other_id, occurred_at, "
                        "recorded_at, position, subject_wins) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    ).format(links),
                    (link.lead_id, link.source, link.event_id, link.kind, link.other_id,
                     link.occurred_at, link.occurred_at, n, link.subject_wins),
                )  # fmt: skip
            identity.refresh(cur, schema, {end for link in batch for end in link.pair})
            incremental = rows(cur, schema)
            folded = IdentityMap(drawn[:end])
            assert incremental == {
                (lead, person, len(members))
                for person, members in folded.people().items()
                for lead in members
            }
            identity.refresh(cur, schema)
            assert rows(cur, schema) == incremental
