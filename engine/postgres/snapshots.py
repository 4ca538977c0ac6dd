"""Snapshots of the lean as-of lead (engine/services/asof_read.py): an opinion, never a fact.

`lead_snapshots` holds, per lead, one row per block of `BLOCK` versions (versions 1..K,
K+1..2K, ...): when that block's events were recorded (`block_min`: its earliest recorded
time; `prefix_max`: the latest recorded time of versions 1..version), and maybe `state`, the
lean lead after folding versions 1..version. The times let an as-of read at T skip whole blocks
recorded after T and pick the newest state whose every event was recorded by T, then fold only
the rest. Nothing else reads the table: `verify`, projections and decisions never do, and
deleting any or all rows at any time only makes as-of reads slower.

A state is the pickled lead (its facts and their indexes packed inside, opened only when read:
engine/services/asof_lazy.py), zlib-compressed, sealed (AES-256-GCM) under the lead's own key and
bound to the lead, the version and the fold code's `fingerprint`, so it holds personal data
only as sealed events do: `forget` shreds the key and the state can no longer be opened (the
lead's rows are also deleted then). Only states this engine sealed are unpickled (the tag is
checked first). A state made by other fold code (another fingerprint) is never read; a lead
with no key to open one (forgotten, or the in-memory store) is folded in full.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import os
import pickle
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import sql
from psycopg.errors import Error as PsycopgError
from psycopg.errors import InsufficientPrivilege, UndefinedTable
from psycopg.rows import tuple_row

from engine.logs import get_logger
from engine.postgres.keystore import KeyStore, ShreddedKey
from engine.postgres.store import datastore_of

#: versions per block: snapshots sit at multiples of it, so a read folds at most ~2 blocks
BLOCK = 500
TABLE = "lead_snapshots"

log = get_logger(__name__)

#: the modules whose code shapes the pickled lead: any change to them drops every snapshot
_SHAPING = (
    "engine/domain/fold.py",
    "engine/domain/moments.py",
    "engine/domain/facts.py",
    "engine/domain/lifecycle.py",
    "engine/domain/identity.py",
    "engine/domain/scorestate.py",
    "engine/domain/shown.py",
    "engine/aggregates/lead.py",
    "engine/services/asof_read.py",
    "engine/services/asof_lazy.py",
    "engine/postgres/snapshots.py",
)


@cache
def fingerprint(block: int = BLOCK) -> str:
    """The fold code's identity: a hash of the modules that shape a snapshot, the block size
    and the Python version (pickles are read only by the code that wrote them)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256(f"{block}/{sys.version_info[:2]}".encode())
    for name in _SHAPING:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:32]


def ddl(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        " lead_id uuid NOT NULL,"
        " fingerprint text NOT NULL,"
        " version integer NOT NULL,"
        " block_min timestamptz NOT NULL,"
        " prefix_max timestamptz NOT NULL,"
        " state bytea,"
        " PRIMARY KEY (lead_id, fingerprint, version))"
    ).format(sql.Identifier(schema, TABLE))


@dataclass(frozen=True, slots=True)
class Read:
    """What `SnapshotStore.read` found: the blocks, the state picked (`version` 0 and `sealed`
    None: none) and the event rows (version, topic, state) to fold after it."""

    blocks: list[Block]
    version: int
    sealed: bytes | None
    rows: list[tuple[int, str, bytes]]


#: `SnapshotStore.read`: `blocks` (kept only while contiguous: the n-th at version n x block),
#: the newest with a state recorded by `at`, and the rows `asof_read._rows` reads from it
_READ = sql.SQL(
    "WITH n AS (SELECT version, block_min, prefix_max, state IS NOT NULL AS has_state,"
    " row_number() OVER (ORDER BY version) AS k FROM {snapshots}"
    " WHERE lead_id = %(lead)s AND fingerprint = %(fp)s),"
    " c AS (SELECT * FROM (SELECT *, bool_and(version = k * %(block)s)"
    " OVER (ORDER BY version) AS ok FROM n) x WHERE ok),"
    " s AS (SELECT version FROM c WHERE has_state AND prefix_max <= %(at)s"
    " ORDER BY version DESC LIMIT 1),"
    " r AS MATERIALIZED (SELECT start, indexed, greatest(start, coalesce((SELECT max(c.version)"
    " FROM c WHERE c.version > start AND c.block_min <= %(at)s), 0)) AS upto FROM"
    " (SELECT coalesce((SELECT version FROM s), 0) AS start,"
    " coalesce((SELECT max(version) FROM c), 0) AS indexed) r0)"
    " SELECT 0 AS kind, version::bigint AS version, NULL::text, NULL::bytea, block_min,"
    " prefix_max, has_state FROM c"
    " UNION ALL SELECT 1, x.version, NULL, x.state, NULL, NULL, NULL FROM {snapshots} x"
    " JOIN s ON x.version = s.version WHERE x.lead_id = %(lead)s AND x.fingerprint = %(fp)s"
    # two index ranges, (start, upto] and after the blocks: one `OR` of them read every row
    # after `start` and tested each against a subquery (47 ms of a 10,000-event lead's read)
    " UNION ALL SELECT 2, e.originator_version, e.topic, e.state, NULL, NULL, NULL"
    " FROM {events} e, r WHERE e.originator_id = %(lead)s"
    " AND e.originator_version > r.start AND e.originator_version <= r.upto"
    " UNION ALL SELECT 2, e.originator_version, e.topic, e.state, NULL, NULL, NULL"
    " FROM {events} e, r WHERE e.originator_id = %(lead)s"
    " AND e.originator_version > greatest(r.start, r.indexed, r.upto)"
    " ORDER BY kind, version"
)


@dataclass(frozen=True, slots=True)
class Block:
    """Versions `version - block + 1 .. version` of a lead, as recorded."""

    version: int
    block_min: datetime
    prefix_max: datetime
    has_state: bool


class SnapshotStore:
    """Read and write one schema's snapshots (see the module docstring)."""

    def __init__(self, datastore: Any, keys: KeyStore, block: int = BLOCK) -> None:
        self.datastore = datastore
        self.keys = keys
        self.block = block
        self.fingerprint = fingerprint(block)
        self.table = sql.Identifier(datastore.schema, TABLE)
        self._held: Any = None

    @contextmanager
    def session(self) -> Iterator[Any]:
        """One pooled connection for a whole read (snapshots and rows), yielded: each round
        trip through the pool costs a connection check."""
        with self.datastore.get_connection() as conn:
            self._held = conn
            try:
                yield conn
            finally:
                self._held = None

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        if self._held is not None:
            yield self._held
        else:
            with self.datastore.get_connection() as conn:
                yield conn

    def blocks(self, lead: UUID) -> list[Block]:
        """The lead's blocks in version order (contiguous from version `BLOCK`)."""
        statement = sql.SQL(
            "SELECT version, block_min, prefix_max, state IS NOT NULL FROM {} "
            "WHERE lead_id = %s AND fingerprint = %s ORDER BY version"
        ).format(self.table)
        try:
            with self._connection() as conn:
                curs = conn.cursor(row_factory=tuple_row)
                curs.execute(statement, (lead, self.fingerprint))
                found = [Block(int(v), lo, hi, bool(s)) for v, lo, hi, s in curs.fetchall()]
        except (UndefinedTable, InsufficientPrivilege):  # not migrated to 25, or not ours
            return []
        contiguous = []
        for n, block in enumerate(found, start=1):
            if block.version != n * self.block:
                break
            contiguous.append(block)
        return contiguous

    def read(self, lead: UUID, moment: datetime, events: sql.Composable) -> Read | None:
        """In one round trip: the lead's blocks (as `blocks`), the sealed state of the newest
        one whose every event was recorded by `moment` (as `as_of_read` picks it), and the
        `events` rows a fold from that state reads: after it, up to the last block begun by
        `moment`, and every row after the blocks (their times are not indexed yet). None if
        the table is not there (not migrated to 25, or not ours)."""
        try:
            with self._connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(
                    _READ.format(snapshots=self.table, events=events),
                    {"lead": lead, "fp": self.fingerprint, "block": self.block, "at": moment},
                )
                found = curs.fetchall()
        except (UndefinedTable, InsufficientPrivilege):
            return None
        blocks: list[Block] = []
        version, sealed = 0, None
        rows: list[tuple[int, str, bytes]] = []
        for kind, v, topic, data, lo, hi, has_state in found:
            if kind == 0:
                blocks.append(Block(int(v), lo, hi, bool(has_state)))
            elif kind == 1:
                version, sealed = int(v), None if data is None else bytes(data)
            else:
                rows.append((int(v), str(topic), bytes(data)))
        return Read(blocks, version, sealed, rows)

    def load(self, lead: UUID, version: int) -> Any | None:
        """The lead folded to `version`, or None if it cannot be opened (no row, no key, a
        forged or damaged blob)."""
        statement = sql.SQL(
            "SELECT state FROM {} WHERE lead_id = %s AND fingerprint = %s AND version = %s"
        ).format(self.table)
        with self._connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement, (lead, self.fingerprint, version))
            row = curs.fetchone()
        if row is None or row[0] is None:
            return None
        return self.open(lead, version, bytes(row[0]))

    def open(self, lead: UUID, version: int, blob: bytes) -> Any | None:
        """The sealed state `blob` of `lead` at `version`, or None if it cannot be opened (no
        key, a forged or damaged blob, one sealed for another lead or version)."""
        key = self.keys.key_for(lead, create=False)
        if key is None:
            return None
        try:
            packed = AESGCM(key).decrypt(
                blob[:12], blob[12:], _aad(lead, version, self.fingerprint)
            )
        except InvalidTag:
            log.warning("snapshot_unreadable", lead_id=str(lead), version=version)
            return None
        return _loads(zlib.decompress(packed))

    def save(
        self,
        lead: UUID,
        blocks: list[tuple[int, datetime, datetime]],
        state: tuple[int, bytes] | None,
    ) -> None:
        """Add `blocks` (version, block_min, prefix_max) and the `state` (version, the pickled
        lead) if given; racing writers agree (first write wins). A failure is logged, never raised:
        a snapshot is an opinion, and the read it came from has its answer already."""
        try:
            sealed = None if state is None else self._seal(lead, *state)
            with self._connection() as conn, conn.transaction():
                if blocks:
                    conn.cursor().executemany(
                        sql.SQL(
                            "INSERT INTO {} (lead_id, fingerprint, version, block_min, prefix_max)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
                        ).format(self.table),
                        [(lead, self.fingerprint, v, lo, hi) for v, lo, hi in blocks],
                    )
                if sealed is not None:
                    conn.execute(
                        sql.SQL(
                            "UPDATE {} SET state = %s WHERE lead_id = %s AND fingerprint = %s "
                            "AND version = %s AND state IS NULL"
                        ).format(self.table),
                        (sealed, lead, self.fingerprint, state[0] if state else 0),
                    )
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE lead_id = %s AND fingerprint <> %s").format(
                        self.table
                    ),
                    (lead, self.fingerprint),
                )
        except ShreddedKey:
            pass  # a forgotten lead: never snapshotted, by design (nothing to warn about)
        except PsycopgError as exc:
            log.warning("snapshot_not_saved", lead_id=str(lead), error=type(exc).__name__)

    def _seal(self, lead: UUID, version: int, pickled: bytes) -> bytes:
        """Raises `ShreddedKey` for a forgotten lead: nothing personal is written in clear."""
        key = self.keys.key_for(lead, create=True)
        assert key is not None  # create=True: a key or ShreddedKey
        nonce = os.urandom(12)
        packed = zlib.compress(pickled, 1)
        return nonce + AESGCM(key).encrypt(nonce, packed, _aad(lead, version, self.fingerprint))


def dumps(state: Any) -> bytes:
    """`state` pickled, frozen dataclasses (facts, steps: most of a lead) by their fields, which
    loads about twice as fast as the default `__setstate__` per field."""
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return out.getvalue()


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        names = _fields(type(obj))
        if names:
            return type(obj), tuple(getattr(obj, name) for name in names)
        return NotImplemented


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` if it is a frozen dataclass built from all of them in order
    (`cls(*fields)`), else ()."""
    names = _FIELDS.get(cls)
    if names is None:
        params = getattr(cls, "__dataclass_params__", None)
        fields = dataclasses.fields(cls) if params is not None and params.frozen else ()
        whole = all(f.init and f.kw_only is not True for f in fields)
        names = _FIELDS[cls] = tuple(f.name for f in fields) if whole else ()
    return names


def _loads(data: bytes) -> Any:
    """`pickle.loads` with the cyclic collector paused: a lead is tens of thousands of new
    objects, none cyclic garbage, and collections while they are built cost a third."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)
    finally:
        if enabled:
            gc.enable()


def drop(recorder: Any, leads: list[UUID]) -> None:
    """Delete the leads' snapshots (`forget`: sealed under a shredded key, unreadable anyway;
    deleted so not even ciphertext stays). No-op for the in-memory store."""
    datastore = datastore_of(recorder)
    if datastore is None:
        return
    with datastore.get_connection() as conn, conn.transaction():
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE lead_id = ANY(%s)").format(
                sql.Identifier(datastore.schema, TABLE)
            ),
            (leads,),
        )


def _aad(lead: UUID, version: int, fingerprint: str) -> bytes:
    return lead.bytes + version.to_bytes(8, "big") + b"snapshot" + fingerprint.encode()
