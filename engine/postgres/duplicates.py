"""The duplicate hash index and the duplicate decisions (docs/identity.md#duplicates).

`duplicate_keys(match, hash, lead_id, first_seen)`: which leads carried a value with this keyed
hash (never the value) and since when. `duplicate_suggestions(rule, match, action, winner_id,
loser_id, rules_version, suggested_at, recorded_at, state)`: each pair a duplicate rule found;
`state` open (a suggestion), merged (an engine merge), unmerged (a lead.unmerged took the pair
apart), superseded (an older key of the same value turned up: its pairs replace this one).
Ids and hashes only. Migration 20 makes both; `forget` deletes a person's rows from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from engine.postgres.db import Connection
from engine.projections import registry

KEYS_TABLE = "duplicate_keys"
DECISIONS_TABLE = "duplicate_suggestions"
STATES = ("open", "merged", "unmerged", "superseded")

DDL = (
    "CREATE TABLE IF NOT EXISTS {s}.duplicate_keys (match text NOT NULL, hash text NOT NULL, "
    "lead_id uuid NOT NULL, first_seen timestamptz NOT NULL, PRIMARY KEY (match, hash, lead_id))",
    "CREATE INDEX IF NOT EXISTS duplicate_keys_lead ON {s}.duplicate_keys (lead_id)",
    *registry.DUPLICATE_SUGGESTIONS.ddl(),
)


def create(conn: Connection, schema: str) -> None:
    s = sql.Identifier(schema)
    for statement in DDL:
        conn.execute(sql.SQL(statement).format(s=s))


@dataclass(frozen=True, slots=True)
class Pair:
    """One duplicate decision: `loser_id` is one person with `winner_id` (the older key)."""

    rule: str
    match: str
    action: str
    winner_id: UUID
    loser_id: UUID
    rules_version: str
    suggested_at: datetime


class DuplicateIndex:
    """The index and the decisions in memory (the in-memory store's; tests of the pure parts)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], dict[UUID, datetime]] = {}
        self.pairs: dict[tuple[str, UUID, UUID], tuple[Pair, str]] = {}

    def note(self, match: str, digest: str, lead_id: UUID, seen: datetime) -> dict[UUID, datetime]:
        """Index `lead_id` under the hash (first seen kept the earliest); every lead indexed
        under it (itself included) with its first seen."""
        group = self.keys.setdefault((match, digest), {})
        group[lead_id] = min(group.get(lead_id, seen), seen)
        return dict(group)

    def note_many(
        self, items: Sequence[tuple[str, str, UUID, datetime]]
    ) -> list[dict[UUID, datetime]]:
        """`note` each (match, hash, lead id, seen) in order: each one's group as it was
        right after it (a batch decides as if its facts had come one by one)."""
        return [self.note(*item) for item in items]

    def decide(self, pairs: Iterable[Pair]) -> None:
        for pair in pairs:
            self._supersede(pair.rule, pair.loser_id)
            state = "merged" if pair.action == "merge" else "open"
            key = (pair.rule, pair.winner_id, pair.loser_id)
            if key not in self.pairs:
                self.pairs[key] = (pair, state)

    def _supersede(self, rule: str, loser: UUID) -> None:
        for key, (pair, state) in list(self.pairs.items()):
            if key[0] == rule and pair.winner_id == loser and state == "open":
                self.pairs[key] = (pair, "superseded")

    def merged(self, a: UUID, b: UUID) -> None:
        """An upstream lead.merged of the pair: its open suggestion is taken (`merged`)."""
        for key, (pair, state) in list(self.pairs.items()):
            if {pair.winner_id, pair.loser_id} == {a, b} and state == "open":
                self.pairs[key] = (pair, "merged")

    def unmerged(self, a: UUID, b: UUID) -> None:
        for key, (pair, state) in list(self.pairs.items()):
            if {pair.winner_id, pair.loser_id} == {a, b} and state in ("merged", "open"):
                self.pairs[key] = (pair, "unmerged")

    def forget(self, lead_ids: Iterable[UUID]) -> None:
        ids = set(lead_ids)
        for group in self.keys.values():
            for i in ids & group.keys():
                del group[i]
        self.pairs = {k: v for k, v in self.pairs.items() if not ({k[1], k[2]} & ids)}


class PostgresDuplicateIndex(DuplicateIndex):
    """The same in the store's schema (migration 20). Writes are idempotent (a batch retried
    after a failed save writes the same rows again)."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__()
        self.datastore = datastore
        s = sql.Identifier(datastore.schema)
        self._keys = sql.SQL("{}.{}").format(s, sql.Identifier(KEYS_TABLE))
        self._pairs = sql.SQL("{}.{}").format(s, sql.Identifier(DECISIONS_TABLE))

    def note_many(
        self, items: Sequence[tuple[str, str, UUID, datetime]]
    ) -> list[dict[UUID, datetime]]:
        """One round trip for a batch: lock the hashes (sorted: no deadlock between two
        consumers), read their groups, add the batch's entries, and give each item its group
        as it was right after it."""
        if not items:
            return []
        keys = sorted({(m, h) for m, h, _, _ in items})
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            # two consumers indexing the same value at once: the second waits, then sees the first
            # one statement, the locks taken in the array's (sorted) order, as one each did
            c.execute(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(d, 20))) "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS u(d, n)",
                ([digest for _, digest in keys],),
            )
            c.execute(
                sql.SQL(
                    "SELECT match, hash, lead_id, first_seen FROM {} "
                    "WHERE (match, hash) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
                ).format(self._keys),
                ([m for m, _ in keys], [h for _, h in keys]),
            )
            groups: dict[tuple[str, str], dict[UUID, datetime]] = {}
            for r in c.fetchall():
                groups.setdefault((r["match"], r["hash"]), {})[UUID(str(r["lead_id"]))] = r[
                    "first_seen"
                ]
            out: list[dict[UUID, datetime]] = []
            for match, digest, lead_id, seen in items:
                group = groups.setdefault((match, digest), {})
                group[lead_id] = min(group.get(lead_id, seen), seen)
                out.append(dict(group))
            c.executemany(
                sql.SQL(
                    "INSERT INTO {t} (match, hash, lead_id, first_seen) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (match, hash, lead_id) DO UPDATE SET "
                    "first_seen = least({t}.first_seen, excluded.first_seen)"
                ).format(t=self._keys),
                list(items),
            )
        return out

    def decide(self, pairs: Iterable[Pair]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            for p in pairs:
                c.execute(
                    sql.SQL(
                        "UPDATE {} SET state = 'superseded' "
                        "WHERE rule = %s AND winner_id = %s AND state = 'open'"
                    ).format(self._pairs),
                    (p.rule, p.loser_id),
                )
                c.execute(
                    sql.SQL(
                        "INSERT INTO {} (rule, match, action, winner_id, loser_id, rules_version, "
                        "suggested_at, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (rule, winner_id, loser_id) DO NOTHING"
                    ).format(self._pairs),
                    (
                        p.rule,
                        p.match,
                        p.action,
                        p.winner_id,
                        p.loser_id,
                        p.rules_version,
                        p.suggested_at,
                        "merged" if p.action == "merge" else "open",
                    ),
                )

    def merged(self, a: UUID, b: UUID) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "UPDATE {} SET state = 'merged' WHERE state = 'open' AND "
                    "((winner_id = %s AND loser_id = %s) OR (winner_id = %s AND loser_id = %s))"
                ).format(self._pairs),
                (a, b, b, a),
            )

    def unmerged(self, a: UUID, b: UUID) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "UPDATE {} SET state = 'unmerged' WHERE state IN ('merged', 'open') AND "
                    "((winner_id = %s AND loser_id = %s) OR (winner_id = %s AND loser_id = %s))"
                ).format(self._pairs),
                (a, b, b, a),
            )

    def forget(self, lead_ids: Iterable[UUID]) -> None:
        ids = list(lead_ids)
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            c.execute(sql.SQL("DELETE FROM {} WHERE lead_id = ANY(%s)").format(self._keys), (ids,))
            c.execute(
                sql.SQL("DELETE FROM {} WHERE winner_id = ANY(%s) OR loser_id = ANY(%s)").format(
                    self._pairs
                ),
                (ids, ids),
            )
