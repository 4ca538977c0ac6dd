"""Rows -> tables: the projector's writers, one statement per table per batch.

- `copy`: COPY straight into a table (the bulk load fills empty tables: nothing to merge).
- `merge`: the live projector's micro-batch write. The batch's rows of a table are COPYed into
  a temporary staging table of the same columns (one per table and connection, made when the
  connection is, emptied by the merge and at each commit), then moved in with one
  `INSERT ... SELECT ... ON CONFLICT`: opinions (lead_state, scores, SLA, the account tables)
  are replaced, history rows already there are kept. An opinion's key appears once per batch
  (the last row made for it wins, as row-by-row upserts in log order would).
- `upsert`: row by row (`executemany`), for the slow path only: when the database rejects a
  batch, each aggregate's rows are written again in a savepoint of their own (`isolated`) to
  find and park the offenders.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

import psycopg
from psycopg import Cursor, sql

from engine.projections.layout import KEYED_TABLES, TABLE_PROJECTION, TABLES, UPSERTED
from engine.projections.parking import ROW_ERRORS

Row = tuple[Any, ...]
#: Writes a table's rows (one of `Writers.copy`, `.merge`, `.upsert`).
Writer = Callable[[Cursor[Any], str, list[Row]], None]
#: Parks an aggregate whose rows the database rejected: (error, projections, aggregate,
#: its first position in the batch, table).
Failed = Callable[[Exception, set[str], UUID, int, str], None]


def _conflict(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> sql.Composable:
    updates = [c for c in columns if c not in key]
    return (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
            )
        )
        if updates and table in UPSERTED
        else sql.SQL("DO NOTHING")
    )


def staging_name(table: str) -> str:
    """The temporary staging table of `table` (in the session's own temporary schema)."""
    return f"leadengine_stage_{table}"


class Merge:
    """COPY rows into a temporary staging table, then one statement moves them into the table
    (`INSERT ... SELECT` from a `DELETE ... RETURNING` of the staging table, so it is empty
    again): on conflict an opinion is replaced (`replace`), a history row kept."""

    def __init__(
        self, schema: str, table: str, columns: tuple[str, ...], key: tuple[str, ...], *,
        replace: bool,
    ) -> None:  # fmt: skip
        target = sql.Identifier(schema, table)
        stage = sql.Identifier(staging_name(table))
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        updates = [c for c in columns if c not in key]
        action = (
            sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
                )
            )
            if updates and replace
            else sql.SQL("DO NOTHING")
        )
        #: made once per connection (Writers.prepare), or on first use in a borrowed one
        self.create = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
            "SELECT {} FROM {} WITH NO DATA"
        ).format(stage, cols, target)
        self.fill = sql.SQL("COPY {} FROM STDIN").format(stage)
        self.move = sql.SQL(
            "WITH staged AS (DELETE FROM {} RETURNING {}) "
            "INSERT INTO {} ({}) SELECT {} FROM staged ON CONFLICT ({}) {}"
        ).format(
            stage, cols, target, cols, cols, sql.SQL(", ").join(map(sql.Identifier, key)), action
        )
        #: the key of a replaced row (a key appears once per merge: the last row made wins)
        self.key = operator.itemgetter(*(columns.index(c) for c in key)) if replace else None

    def __call__(self, cur: Cursor[Any], values: list[Row], *, prepared: bool) -> None:
        if not values:
            return
        if self.key is not None and len(values) > 1:
            values = list({self.key(row): row for row in values}.values())
        if not prepared:
            cur.execute(self.create)
        with cur.copy(self.fill) as copy:
            for row in values:
                copy.write_row(row)
        cur.execute(self.move)


class Writers:
    """The statements that write the projector's tables in `schema`, built once."""

    def __init__(
        self, schema: str, extra: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None
    ) -> None:
        """`extra`: more tables merged through here, each (columns, key), rows replaced on
        conflict (the account tables)."""
        self.schema = schema
        self._upserts: dict[str, sql.Composed] = {}
        self._copies: dict[str, sql.Composed] = {}
        self.merges: dict[str, Merge] = {}
        #: the staging tables made on the current connection (Writers.prepare)
        self.prepared: frozenset[str] = frozenset()
        for table, (columns, key) in TABLES.items():
            target = sql.Identifier(schema, table)
            cols = sql.SQL(", ").join(map(sql.Identifier, columns))
            keys = sql.SQL(", ").join(map(sql.Identifier, key))
            action = _conflict(table, columns, key)
            self._upserts[table] = sql.SQL(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}"
            ).format(
                target, cols, sql.SQL(", ").join(sql.Placeholder() * len(columns)), keys, action
            )
            self._copies[table] = sql.SQL("COPY {} ({}) FROM STDIN").format(target, cols)
            self.merges[table] = Merge(schema, table, columns, key, replace=table in UPSERTED)
        for table, (columns, key) in (extra or {}).items():
            self.merges[table] = Merge(schema, table, columns, key, replace=True)
        self._rekeys = {
            t: sql.SQL("UPDATE {} SET lead_key = %s WHERE lead_id = %s").format(
                sql.Identifier(schema, t)
            )
            for t in KEYED_TABLES
        }
        self._retract = sql.SQL(
            "UPDATE {} SET retracted_at = %s WHERE lead_id = %s AND version = %s "
            "AND retracted_at IS NULL"
        ).format(sql.Identifier(schema, "lead_stage_history"))

    def prepare(self, conn: psycopg.Connection[Any], tables: Iterable[str]) -> None:
        """Make the staging tables of `tables` on a new connection, committed (they live as
        long as it; emptied at each commit), so a batch's merge is two round trips."""
        tables = [t for t in tables if t in self.merges]
        with conn.transaction():
            for table in tables:
                conn.execute(self.merges[table].create)
        self.prepared = frozenset(tables)

    def copy(self, cur: Cursor[Any], table: str, values: list[Row]) -> None:
        """COPY rows straight into `table` (empty tables of a bulk load)."""
        if not values:
            return
        with cur.copy(self._copies[table]) as copy:
            for row in values:
                copy.write_row(row)

    def merge(self, cur: Cursor[Any], table: str, values: list[Row]) -> None:
        """COPY rows into `table`'s staging table and merge them in with one statement."""
        self.merges[table](cur, values, prepared=table in self.prepared)

    def upsert(self, cur: Cursor[Any], table: str, values: list[Row]) -> None:
        """Row by row (the slow path, one aggregate at a time)."""
        if values:
            cur.executemany(self._upserts[table], values)

    def rekeys(self, cur: Cursor[Any], rekeys: dict[str, list[tuple[str, UUID]]]) -> None:
        """A forgotten lead's rows show its pseudonym instead of its key."""
        for table, pairs in rekeys.items():
            cur.executemany(self._rekeys[table], pairs)

    def retractions(self, cur: Cursor[Any], retracted: list[Any]) -> None:
        """Stamp stage-history rows of earlier batches retracted."""
        if retracted:
            cur.executemany(self._retract, retracted)


def isolated(
    cur: Cursor[Any],
    values: dict[str, list[Row]],
    owner: Callable[[str, int, Row], UUID],
    first_seen: dict[UUID, int],
    write: Writer,
    failed: Failed,
) -> None:
    """Write each aggregate's rows of each projection in a savepoint of their own; park the
    aggregates whose rows the database rejects (the slow path, taken only after a failure)."""
    groups: dict[tuple[str, UUID], dict[str, list[Row]]] = {}
    for table in TABLES:
        projection = TABLE_PROJECTION[table]
        for i, row in enumerate(values.get(table, ())):
            groups.setdefault((projection, owner(table, i, row)), {}).setdefault(table, []).append(
                row
            )
    for (projection, aggregate), tables in groups.items():
        table = ""
        try:
            with cur.connection.transaction():
                for table, table_rows in tables.items():
                    write(cur, table, table_rows)
        except ROW_ERRORS as exc:
            failed(exc, {projection}, aggregate, first_seen.get(aggregate, 0), table)


def all_or_isolated(
    cur: Cursor[Any],
    values: dict[str, list[Row]],
    owner: Callable[[str, int, Row], UUID],
    first_seen: dict[UUID, int],
    write: Writer,
    failed: Failed,
) -> None:
    """Write every table's rows in a savepoint; if one is rejected, again an aggregate at a
    time, parking the offenders."""
    try:
        with cur.connection.transaction():
            for table, table_rows in values.items():
                write(cur, table, table_rows)
    except ROW_ERRORS:
        isolated(cur, values, owner, first_seen, write, failed)
