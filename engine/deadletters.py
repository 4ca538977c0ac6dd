"""The dead-letter store: every rejected record, byte for byte, with the reason it was refused.

Nothing is lost: a record that fails validation is kept here (origin says where it came from:
file and line, or topic, partition and offset) so it can be inspected, fixed and replayed. The
same bytes from the same origin are kept once, so re-reading a file does not double the list.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from engine.db import Database
from engine.errors import InvalidEvent

TABLE = "dead_letters"


@dataclass(frozen=True)
class DeadLetter:
    origin: str
    raw: bytes
    error: InvalidEvent

    def as_row(self) -> tuple[Any, ...]:
        e = self.error
        digest = hashlib.sha256(self.raw).hexdigest()
        return (self.origin, e.event_id, e.event_type, e.field, e.describe(), self.raw, digest)


DDL = """
CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    origin text NOT NULL,
    event_id text,
    event_type text,
    field text,
    error text NOT NULL,
    raw bytea NOT NULL,
    digest text NOT NULL,
    UNIQUE (origin, digest)
)
"""


class DeadLetterStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._table = sql.Identifier(db.schema, TABLE)

    def create_table(self) -> None:
        with self.db.connect() as conn:
            conn.execute(sql.SQL(DDL).format(schema=sql.Identifier(self.db.schema)))

    def add(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        query = sql.SQL(
            "INSERT INTO {} (origin, event_id, event_type, field, error, raw, digest) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (origin, digest) DO NOTHING"
        ).format(self._table)
        with self.db.connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(query, [letter.as_row() for letter in letters])

    def purge_person(self, key: str, values: frozenset[str]) -> int:
        """Delete the dead letters about lead `key` or holding any of its personal `values`.

        Records are compared by their decoded JSON, not their bytes (an address escaped as
        `\\u0040` is still the address): a record goes when any of its strings (keys included)
        holds the key or a value as a whole token, case-insensitively. Bytes that do not decode
        are searched as text with their `\\uXXXX` escapes undone."""
        needles = _needles([key, *values])
        if not needles:
            return 0
        doomed: list[int] = []
        with self.db.connect(autocommit=False) as conn, conn.transaction():
            with conn.cursor(name="leadengine_purge") as scan:
                scan.itersize = 500
                scan.execute(sql.SQL("SELECT id, raw FROM {}").format(self._table))
                for row_id, raw in scan:
                    if _mentions(bytes(raw), needles):
                        doomed.append(row_id)
            if doomed:
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._table), (doomed,)
                )
        return len(doomed)

    def vacuum(self) -> None:
        """Physically remove deleted rows (a purged dead letter must not linger on disk)."""
        self.db.vacuum_full(TABLE)

    def count(self) -> int:
        with self.db.connect() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._table)).fetchone()
        return int(row[0]) if row else 0

    def latest(self, limit: int = 20) -> list[dict[str, Any]]:
        query = sql.SQL(
            "SELECT id, received_at, origin, event_id, event_type, field, error, raw "
            "FROM {} ORDER BY id DESC LIMIT %s"
        ).format(self._table)
        with self.db.connect() as conn:
            rows = conn.execute(query, (limit,)).fetchall()
        return [
            {
                "id": r[0],
                "received_at": _iso(r[1]),
                "origin": r[2],
                "event_id": r[3],
                "event_type": r[4],
                "field": r[5],
                "error": r[6],
                "raw": bytes(r[7]).decode("utf-8", "replace"),
            }
            for r in rows
        ]

    # -- replay and purge (`leadengine deadletters replay | purge`) ------------------------------

    def kept(
        self, ids: Sequence[int] | None = None, *, after: int = 0, limit: int = 500
    ) -> list[KeptLetter]:
        """Rows with id > `after` in id order (only `ids`, when given), at most `limit`."""
        where = "id > %s" + (" AND id = ANY(%s)" if ids is not None else "")
        params: list[Any] = [after, *([list(ids)] if ids is not None else []), limit]
        query = sql.SQL(
            "SELECT id, origin, raw, error FROM {} WHERE " + where + " ORDER BY id LIMIT %s"
        ).format(self._table)
        with self.db.connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return [KeptLetter(int(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    def refused_again(self, row_id: int, error: InvalidEvent) -> None:
        """A replayed row failed again: its reason becomes the new one; its bytes stay."""
        query = sql.SQL(
            "UPDATE {} SET event_id = %s, event_type = %s, field = %s, error = %s WHERE id = %s"
        ).format(self._table)
        with self.db.connect() as conn:
            conn.execute(
                query, (error.event_id, error.event_type, error.field, error.describe(), row_id)
            )

    def matching(
        self, ids: Sequence[int] | None = None, *, before: datetime | None = None
    ) -> list[int]:
        """The ids of the rows a purge would delete: `ids`, received before `before`, or all."""
        clauses, params = _selection(ids, before)
        query = sql.SQL("SELECT id FROM {} WHERE " + clauses + " ORDER BY id").format(self._table)
        with self.db.connect() as conn:
            return [int(r[0]) for r in conn.execute(query, params).fetchall()]

    def delete(self, ids: Sequence[int] | None = None, *, before: datetime | None = None) -> int:
        """Delete `ids`, the rows received before `before`, or (neither given) every row."""
        clauses, params = _selection(ids, before)
        query = sql.SQL("DELETE FROM {} WHERE " + clauses).format(self._table)
        with self.db.connect() as conn:
            return conn.execute(query, params).rowcount


@dataclass(frozen=True)
class KeptLetter:
    """A stored dead letter, as replay reads it back."""

    id: int
    origin: str
    raw: bytes
    error: str


def _selection(ids: Sequence[int] | None, before: datetime | None) -> tuple[str, list[Any]]:
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if ids is not None:
        clauses.append("id = ANY(%s)")
        params.append(list(ids))
    if before is not None:
        clauses.append("received_at < %s")
        params.append(before)
    return " AND ".join(clauses), params


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _needles(values: list[str]) -> list[re.Pattern[str]]:
    """A whole-token pattern per personal value (normalised; blank values ignored)."""
    found = {_normal(v).strip() for v in values}
    return [
        re.compile(r"(?<![\w.@+-])" + re.escape(v) + r"(?![\w@-]|\.\w)")
        for v in sorted(found)
        if v
    ]


def _strings(doc: Any) -> list[str]:
    """Every string in a decoded JSON document, object keys included (no recursion)."""
    out: list[str] = []
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _mentions(raw: bytes, needles: list[re.Pattern[str]]) -> bool:
    """Whether the record holds any needle: in its decoded JSON, else in its text."""
    text = raw.decode("utf-8", "replace")
    try:
        strings = _strings(json.loads(text))
    except (ValueError, RecursionError):
        strings = [_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)]
    normal = [_normal(s) for s in strings]
    return any(n.search(s) for n in needles for s in normal)


def _iso(value: datetime) -> str:
    return value.isoformat()
