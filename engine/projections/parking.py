"""Parked aggregates: one lead (or campaign) a projection could not fold or write, set aside
with the reason so the projection moves on (`<schema>.parked`, migration 5).

A projection skips the later events of an aggregate it parked (its rows stay as last written)
until `leadengine projections retry` re-folds the aggregate from its whole stream, or a rebuild
starts it over. The reason names the exception's class, where it was raised and the message
(the aggregate's key scrubbed from it); a database rejection gives its primary message and the
table, never the row's values.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg import Cursor, sql

DDL = """
CREATE TABLE IF NOT EXISTS {s}.parked (
    projection text NOT NULL,
    originator_id uuid NOT NULL,
    lead_key text,
    position bigint NOT NULL,
    error text NOT NULL,
    reason text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 1,
    retried_at timestamptz,
    PRIMARY KEY (projection, originator_id)
)"""
COLUMNS = ("projection", "originator_id", "lead_key", "position", "error", "reason")

#: What a database rejecting one row raises (a value it cannot hold, a constraint). Anything else
#: from the database (connection lost, lock timeout, missing table) is not one lead's fault and
#: still stops the batch, to be retried whole.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)
#: Failures of the infrastructure, never parked: reading the store, the database.
INFRASTRUCTURE = (psycopg.Error, PersistenceError)
REASON_LENGTH = 300


@dataclass(frozen=True)
class Park:
    """Why `projection` set aggregate `originator_id` aside at notification `position`."""

    projection: str
    originator_id: UUID
    lead_key: str | None
    position: int
    error: str
    reason: str

    def row(self) -> tuple[Any, ...]:
        """The row for `parked` (a NUL byte, which text columns refuse, written as `\\0`)."""
        return (
            self.projection,
            self.originator_id,
            _text(self.lead_key),
            self.position,
            self.error,
            _text(self.reason),
        )


def _text(value: str | None) -> str | None:
    return value.replace("\x00", "\\0") if value is not None else None


def describe(exc: BaseException, key: str | None, table: str | None = None) -> tuple[str, str]:
    """(error class, reason) of a failure, without the row's values or the aggregate's key."""
    if isinstance(exc, psycopg.Error):
        diag = exc.diag
        message = diag.message_primary or str(exc).splitlines()[0]
        where = table or diag.table_name
        column = f" column {diag.column_name}" if diag.column_name else ""
        constraint = f" constraint {diag.constraint_name}" if diag.constraint_name else ""
        reason = f"writing {where}{column}{constraint}: {message}" if where else message
    else:
        reason = f"{type(exc).__name__}{_where(exc)}: {exc}"
    if key:
        reason = reason.replace(key, "<key>")
    if len(reason) > REASON_LENGTH:
        reason = reason[: REASON_LENGTH - 1] + "…"
    return type(exc).__name__, reason


def _where(exc: BaseException) -> str:
    """` in engine/<module>:<line> (<function>)`: the innermost frame of ours it went through."""
    frames = traceback.extract_tb(exc.__traceback__)
    paths = [f.filename.replace("\\", "/") for f in frames]
    ours = [(f, p) for f, p in zip(frames, paths, strict=True) if "/engine/" in p]
    if ours:
        frame, path = ours[-1]
        return f" in engine/{path.rsplit('/engine/', 1)[1]}:{frame.lineno} ({frame.name})"
    if frames:
        return f" in {paths[-1].rsplit('/', 1)[-1]}:{frames[-1].lineno} ({frames[-1].name})"
    return ""


def load(
    conn: psycopg.Connection[Any], schema: str, projections: tuple[str, ...]
) -> dict[str, set[UUID]]:
    """The aggregates each of `projections` has parked."""
    found: dict[str, set[UUID]] = {name: set() for name in projections}
    for name, originator_id in conn.execute(
        sql.SQL("SELECT projection, originator_id FROM {} WHERE projection = ANY(%s)").format(
            sql.Identifier(schema, "parked")
        ),
        (list(projections),),
    ):
        found[name].add(originator_id)
    return found


def record(cur: Cursor[Any], schema: str, parks: list[Park]) -> None:
    """Park these aggregates (one already parked keeps its first failure)."""
    if not parks:
        return
    cur.executemany(
        sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (projection, originator_id) DO NOTHING"
        ).format(
            sql.Identifier(schema, "parked"),
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
            sql.SQL(", ").join(sql.Placeholder() * len(COLUMNS)),
        ),
        [park.row() for park in parks],
    )


def counts(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """Parked aggregates per projection (none: absent)."""
    rows = conn.execute(
        sql.SQL("SELECT projection, count(*) FROM {} GROUP BY projection").format(
            sql.Identifier(schema, "parked")
        )
    ).fetchall()
    return {str(name): int(n) for name, n in rows}


def rekey(conn: psycopg.Connection[Any], schema: str, originator_id: UUID, shown: str) -> None:
    """After `forget`: the parked rows of the lead show its pseudonym, not its key."""
    conn.execute(
        sql.SQL("UPDATE {} SET lead_key = %s WHERE originator_id = %s").format(
            sql.Identifier(schema, "parked")
        ),
        (shown, originator_id),
    )
