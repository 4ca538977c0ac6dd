"""The live projector's micro-batch merge (engine/projections/bulk.py) leaves a table as
row-by-row upserts in log order would: whatever the rows, duplicates of a key within a batch,
rows already in the table, opinions replaced or history kept."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.postgres import db as dbmod
from engine.projections.bulk import Merge

#: any text the contract accepts (it refuses a NUL byte and a lone surrogate before storage:
#: engine/domain/limits.py; psycopg cannot encode a lone surrogate at all)
texts = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=5
)
rows = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3), texts | st.none()), max_size=25)


def _table(conn: Any, schema: str, name: str) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {} (k int, j int, v text, PRIMARY KEY (k, j))").format(
            sql.Identifier(schema, name)
        )
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=rows, batches=st.lists(rows, min_size=1, max_size=3), replace=st.booleans())
def test_a_merge_equals_row_by_row_upserts_in_order(
    database: dbmod.Database,
    before: list[tuple[int, int, str | None]],
    batches: list[list[tuple[int, int, str | None]]],
    replace: bool,
) -> None:
    schema = database.schema
    action = "DO UPDATE SET v = EXCLUDED.v" if replace else "DO NOTHING"
    with database.connect() as conn:
        for name in ("merged", "upserted"):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
            _table(conn, schema, name)
        merge = Merge(schema, "merged", ("k", "j", "v"), ("k", "j"), replace=replace)

        def upsert(name: str) -> sql.Composed:
            return sql.SQL(
                "INSERT INTO {} (k, j, v) VALUES (%s, %s, %s) ON CONFLICT (k, j) " + action
            ).format(sql.Identifier(schema, name))

        with conn.transaction(), conn.cursor() as cur:  # rows of earlier batches
            if before:
                cur.executemany(upsert("merged"), before)
                cur.executemany(upsert("upserted"), before)
        made = False
        for batch in batches:  # each in its own transaction, as the projector's
            with conn.transaction(), conn.cursor() as cur:
                merge(cur, batch, prepared=made)  # the staging table: made on first use, kept
                if batch:
                    cur.executemany(upsert("upserted"), batch)
            made = made or bool(batch)
        found = {
            name: conn.execute(
                sql.SQL("SELECT k, j, v FROM {} ORDER BY k, j").format(sql.Identifier(schema, name))
            ).fetchall()
            for name in ("merged", "upserted")
        }
        staged = (
            conn.execute("SELECT count(*) FROM leadengine_stage_merged").fetchone()
            if made
            else (0,)
        )
    assert found["merged"] == found["upserted"]
    assert staged == (0,)  # the staging table is empty again
