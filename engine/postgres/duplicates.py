"""The duplicate hash index and the duplicate decisions (docs/identity.md#duplicates).

`duplicate_keys(match, hash, lead_id, first_seen)`: which leads carried a value with this keyed
hash (never the value) and since when. `duplicate_suggestions(rule, match, action, winner_id,
loser_id, rules_version, suggested_at, recorded_at, state)`: each pair a duplicate rule found;
`state` open (a suggestion), merged (an engine merge), unmerged (a lead.unmerged took the pair
apart), superseded (an older key of the same value turned up: its pairs replace this one),
dismissed (someone said two people: `duplicates dismiss`; never suggested again).
Ids and hashes only. A batch's rows are written in its save's transaction (`Batch`).
Migration 20 makes both; `forget` deletes a person's rows from both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from engine.postgres.db import Connection
from engine.projections import registry

KEYS_TABLE = "duplicate_keys"
DECISIONS_TABLE = "duplicate_suggestions"
STATES = ("open", "merged", "unmerged", "superseded", "dismissed")
#: (match, hash) -> lead id -> first seen
Groups = dict[tuple[str, str], dict[UUID, datetime]]

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


class IndexMoved(IntegrityError):
    """Another consumer indexed a hash this batch read, between the read and the save: the
    batch is redone on a fresh read (as for a version conflict)."""


@dataclass
class Batch:
    """One batch's changes to the index and the pairs, held until the batch's save: the
    PostgreSQL store writes them in the save's transaction (`write`), so a failed save leaves
    neither the events nor an index row, and a retried batch writes each row once."""

    index: DuplicateIndex
    #: every hash the batch read, with its group as read: checked again under lock on save
    read: Groups = field(default_factory=dict)
    #: (match, hash, lead id, first seen) to index, in batch order
    keys: list[tuple[str, str, UUID, datetime]] = field(default_factory=list)
    #: the pairs' changes, each with the position in the batch of the event that made it:
    #: ("decide", Pair, i) / ("merged" | "unmerged" | "dismissed", (a, b), i)
    ops: list[tuple[str, Any, int]] = field(default_factory=list)
    #: the position in the batch of the event being applied (set by the application)
    at: int = 0
    #: (source, event id) -> its position in the batch, for the facts the duplicate rules look at
    seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keys or self.ops)

    def note_many(
        self, items: Sequence[tuple[str, str, UUID, datetime]]
    ) -> list[dict[UUID, datetime]]:
        """Each (match, hash, lead id, seen) in order: its group as it is right after it (the
        stored group plus the batch's earlier entries), so a batch decides as if its facts had
        come one by one."""
        if not items:
            return []
        wanted = sorted({(m, h) for m, h, _, _ in items} - self.read.keys())
        self.read.update(self.index.groups(wanted))
        groups = {k: dict(v) for k, v in self.read.items()}
        for match, digest, lead_id, seen in self.keys:
            group = groups.setdefault((match, digest), {})
            group[lead_id] = min(group.get(lead_id, seen), seen)
        out: list[dict[UUID, datetime]] = []
        for match, digest, lead_id, seen in items:
            group = groups.setdefault((match, digest), {})
            group[lead_id] = min(group.get(lead_id, seen), seen)
            out.append(dict(group))
        self.keys.extend(items)
        return out

    def decide(self, pairs: Iterable[Pair], at: int | None = None) -> None:
        """Pairs the rules decided on the fact at position `at` (default: the current one)."""
        pos = self.at if at is None else at
        self.ops.extend(("decide", p, pos) for p in pairs)

    def ordered(self) -> list[tuple[str, Any]]:
        """The changes in the order of the events that made them (decisions are found after
        the batch's facts are applied, upstream merges while they are): so a batch changes the
        pairs as the same events one by one would, whatever the batch size."""
        return [(op, arg) for op, arg, _ in sorted(self.ops, key=lambda o: o[2])]

    def merged(self, a: UUID, b: UUID) -> None:
        """An upstream lead.merged of the pair: its open suggestion is taken (`merged`)."""
        self.ops.append(("merged", (a, b), self.at))

    def unmerged(self, a: UUID, b: UUID) -> None:
        self.ops.append(("unmerged", (a, b), self.at))

    def dismissed(self, winner: UUID, loser: UUID) -> None:
        """The pair's open suggestions are dismissed (`duplicates dismiss`)."""
        self.ops.append(("dismissed", (winner, loser), self.at))

    def write(self, cur: Any) -> None:
        """Write the batch in the caller's transaction (the save's): lock the hashes read
        (sorted: no deadlock between two consumers), check their groups are still as read
        (`IndexMoved` if not), then write the keys and the pairs' changes."""
        assert isinstance(self.index, PostgresDuplicateIndex)
        self.index.write(cur, self)


class DuplicateIndex:
    """The index and the decisions in memory (the in-memory store's; tests of the pure parts).

    A batch reads through `batch()` and changes nothing until `commit` (the in-memory store)
    or its save's transaction (`Batch.write`, PostgreSQL)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], dict[UUID, datetime]] = {}
        self.pairs: dict[tuple[str, UUID, UUID], tuple[Pair, str]] = {}

    def batch(self) -> Batch:
        return Batch(self)

    def groups(self, wanted: Sequence[tuple[str, str]]) -> Groups:
        """The stored group of each (match, hash): lead id -> first seen (empty if none)."""
        return {k: dict(self.keys.get(k, {})) for k in wanted}

    def commit(self, batch: Batch) -> None:
        """Apply a saved batch (the in-memory store; PostgreSQL wrote it in the save)."""
        for match, digest, lead_id, seen in batch.keys:
            group = self.keys.setdefault((match, digest), {})
            group[lead_id] = min(group.get(lead_id, seen), seen)
        for op, arg in batch.ordered():
            if op == "decide":
                self._decide(arg)
            else:
                self._state(op, *arg)

    def _decide(self, pair: Pair) -> None:
        for key, (p, state) in list(self.pairs.items()):
            if key[0] == pair.rule and p.winner_id == pair.loser_id and state == "open":
                self.pairs[key] = (p, "superseded")
        key = (pair.rule, pair.winner_id, pair.loser_id)
        if key not in self.pairs:
            self.pairs[key] = (pair, "merged" if pair.action == "merge" else "open")

    def open_pairs(self, winner: UUID, loser: UUID) -> list[Pair]:
        """The open suggestions of `loser` being a duplicate of `winner`, by rule."""
        found = [
            p for (_, w, lo), (p, s) in self.pairs.items() if (w, lo, s) == (winner, loser, "open")
        ]
        return sorted(found, key=lambda p: p.rule)

    def _state(self, op: str, a: UUID, b: UUID) -> None:
        was = ("merged", "open") if op == "unmerged" else ("open",)
        for key, (pair, state) in list(self.pairs.items()):
            if {pair.winner_id, pair.loser_id} == {a, b} and state in was:
                self.pairs[key] = (pair, op)

    def forget(self, lead_ids: Iterable[UUID]) -> None:
        ids = set(lead_ids)
        for group in self.keys.values():
            for i in ids & group.keys():
                del group[i]
        self.pairs = {k: v for k, v in self.pairs.items() if not ({k[1], k[2]} & ids)}


class PostgresDuplicateIndex(DuplicateIndex):
    """The same in the store's schema (migration 20). A batch's rows are written in its save's
    transaction (`write`); writes are idempotent."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__()
        self.datastore = datastore
        s = sql.Identifier(datastore.schema)
        self._keys = sql.SQL("{}.{}").format(s, sql.Identifier(KEYS_TABLE))
        self._pairs = sql.SQL("{}.{}").format(s, sql.Identifier(DECISIONS_TABLE))

    def groups(self, wanted: Sequence[tuple[str, str]]) -> Groups:
        """One round trip for a batch's hashes, as committed."""
        if not wanted:
            return {}
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            return self._select(c, wanted)

    def _select(self, c: Any, wanted: Sequence[tuple[str, str]]) -> Groups:
        out: dict[tuple[str, str], dict[UUID, datetime]] = {k: {} for k in wanted}
        c.execute(
            sql.SQL(
                "SELECT match, hash, lead_id, first_seen FROM {} "
                "WHERE (match, hash) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
            ).format(self._keys),
            ([m for m, _ in wanted], [h for _, h in wanted]),
        )
        for r in c.fetchall():
            out[(r["match"], r["hash"])][UUID(str(r["lead_id"]))] = r["first_seen"]
        return out

    def commit(self, batch: Batch) -> None:
        """Nothing: the save wrote the batch (`write`)."""

    def open_pairs(self, winner: UUID, loser: UUID) -> list[Pair]:
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "SELECT rule, match, action, winner_id, loser_id, rules_version, suggested_at "
                    "FROM {} WHERE state = 'open' AND winner_id = %s AND loser_id = %s "
                    "ORDER BY rule"
                ).format(self._pairs),
                (winner, loser),
            )
            return [
                Pair(
                    r["rule"],
                    r["match"],
                    r["action"],
                    UUID(str(r["winner_id"])),
                    UUID(str(r["loser_id"])),
                    r["rules_version"],
                    r["suggested_at"],
                )
                for r in c.fetchall()
            ]

    def write(self, c: Any, batch: Batch) -> None:
        wanted = sorted(batch.read)
        if wanted:
            conn = c.connection  # own cursors: the save's runs in pipeline mode
            conn.execute("SET LOCAL lock_timeout = '5s'")  # a wait on each other ends, redone
            # two consumers indexing the same value at once: the second waits, then redoes
            conn.execute(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(h, 20))) "
                "FROM (SELECT h FROM unnest(%s::text[]) h ORDER BY h) s",
                (sorted({h for _, h in wanted}),),
            )
            with conn.cursor() as sel:
                now = self._select(sel, wanted)
        else:
            now = {}
        if now != batch.read:
            moved = sorted(k for k in wanted if now[k] != batch.read[k])
            raise IndexMoved(
                f"duplicate index: {len(moved)} hash(es) this batch read were indexed by "
                "another writer before its save; the batch is redone on a fresh read"
            )
        if batch.keys:
            c.executemany(
                sql.SQL(
                    "INSERT INTO {t} (match, hash, lead_id, first_seen) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (match, hash, lead_id) DO UPDATE SET "
                    "first_seen = least({t}.first_seen, excluded.first_seen)"
                ).format(t=self._keys),
                batch.keys,
            )
        for op, arg in batch.ordered():
            if op == "decide":
                self._write_pair(c, arg)
            else:
                a, b = arg
                was = "state IN ('merged', 'open')" if op == "unmerged" else "state = 'open'"
                c.execute(
                    sql.SQL(
                        "UPDATE {} SET state = %s WHERE " + was + " AND "
                        "((winner_id = %s AND loser_id = %s) OR (winner_id = %s AND loser_id = %s))"
                    ).format(self._pairs),
                    (op, a, b, b, a),
                )

    def _write_pair(self, c: Any, p: Pair) -> None:
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
