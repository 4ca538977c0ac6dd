"""Per-lead data keys, each wrapped by the master key; shredding one forgets a lead for good.

Keys: `lead_keys(lead_id, wrapped, created_at, shredded_at)`. `shred` wipes the wrapped key and
leaves a tombstone, so no process can mint a new key for a forgotten lead. `master_key_check`
holds one value sealed with the master key, so a process with another master key stops at start.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.postgres import PostgresDatastore
from psycopg import sql

from engine.domain.errors import LeadEngineError
from engine.postgres.db import one_row
from engine.postgres.keyfile import MasterKeyError

KEYS_TABLE = "lead_keys"
CHECK_TABLE = "master_key_check"
_CHECK_PLAINTEXT = b"leadengine master key check v1"


class ShreddedKey(LeadEngineError):
    """Personal data was about to be sealed for a lead whose key is already shredded."""


class KeyStore:
    """Per-lead data keys, wrapped by the master key. This base keeps them in memory."""

    def __init__(self, master: bytes, cache_size: int = 50_000) -> None:
        self._master = AESGCM(master)
        self._cache: OrderedDict[UUID, bytes | None] = OrderedDict()  # None = shredded
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._rows: dict[UUID, bytes | None] = {}  # the in-memory "table"

    # -- wrapping ---------------------------------------------------------------------------

    def wrap(self, lead: UUID, key: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._master.encrypt(nonce, key, lead.bytes)

    def unwrap(self, lead: UUID, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:12], wrapped[12:], lead.bytes)
        except InvalidTag:
            raise MasterKeyError(
                f"the key of lead {lead} does not open with this master key"
            ) from None

    # -- cache ------------------------------------------------------------------------------

    def _remember(self, lead: UUID, key: bytes | None) -> None:
        with self._lock:
            self._cache[lead] = key
            self._cache.move_to_end(lead)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _cached(self, lead: UUID) -> tuple[bool, bytes | None]:
        with self._lock:
            if lead in self._cache:
                self._cache.move_to_end(lead)
                return True, self._cache[lead]
        return False, None

    # -- API --------------------------------------------------------------------------------

    def ensure(self, leads: Iterable[UUID]) -> None:
        """Make sure each lead has a key (create missing ones) and cache them: one round trip."""
        missing = [lead for lead in dict.fromkeys(leads) if not self._cached(lead)[0]]
        if missing:
            for lead, key in self._fetch(missing, create=True).items():
                self._remember(lead, key)

    def prefetch(self, leads: Iterable[UUID]) -> None:
        """Cache the keys (or tombstones) that exist for `leads`; none are created, and a lead
        with no row is not cached (a later `ensure` may still create its key)."""
        missing = [lead for lead in dict.fromkeys(leads) if not self._cached(lead)[0]]
        if missing:
            for lead, key in self._fetch(missing, create=False).items():
                self._remember(lead, key)

    def key_for(self, lead: UUID, *, create: bool) -> bytes | None:
        hit, key = self._cached(lead)
        if not hit:
            (self.ensure if create else self.prefetch)([lead])
            hit, key = self._cached(lead)
        if key is None and create:
            raise ShreddedKey(f"lead {lead} was forgotten; its personal data is not kept")
        return key

    def shredded(self, lead: UUID) -> bool:
        """Whether the lead was forgotten (its key is a tombstone)."""
        hit, key = self._cached(lead)
        if not hit:
            self.prefetch([lead])
            hit, key = self._cached(lead)
        return hit and key is None

    def shredded_with_prefix(self, prefix: str) -> list[UUID]:
        """The forgotten leads whose id's hex digits start with `prefix` (a pseudonym's)."""
        return [lead for lead, wrapped in self._rows.items() if wrapped is None and
                lead.hex.startswith(prefix)]  # fmt: skip

    def shred(self, lead: UUID) -> bool:
        """Destroy the lead's key for good (tombstone stays). True if there was a key."""
        existed = self._shred(lead)
        self._remember(lead, None)
        return existed

    # -- storage (overridden by the PostgreSQL store) ----------------------------------------

    def _fetch(self, leads: list[UUID], *, create: bool) -> dict[UUID, bytes | None]:
        out: dict[UUID, bytes | None] = {}
        for lead in leads:
            if lead not in self._rows and create:
                self._rows[lead] = self.wrap(lead, os.urandom(32))
            if lead in self._rows:
                wrapped = self._rows[lead]
                out[lead] = None if wrapped is None else self.unwrap(lead, wrapped)
        return out

    def _shred(self, lead: UUID) -> bool:
        existed = self._rows.get(lead) is not None
        self._rows[lead] = None
        return existed


class PostgresKeyStore(KeyStore):
    """Keys in `lead_keys` beside the events; created with ON CONFLICT so racing writers agree."""

    def __init__(
        self, datastore: PostgresDatastore, master: bytes, cache_size: int = 50_000
    ) -> None:
        super().__init__(master, cache_size)
        self.datastore = datastore
        s = sql.Identifier(datastore.schema)
        self._table = sql.SQL("{}.{}").format(s, sql.Identifier(KEYS_TABLE))
        self._check = sql.SQL("{}.{}").format(s, sql.Identifier(CHECK_TABLE))

    def create_tables(self) -> None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (lead_id uuid PRIMARY KEY, wrapped bytea, "
                    "created_at timestamptz NOT NULL DEFAULT now(), shredded_at timestamptz)"
                ).format(self._table)
            )
            c.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1), "
                    "sealed bytea NOT NULL)"
                ).format(self._check)
            )
            nonce = os.urandom(12)
            sealed = nonce + self._master.encrypt(nonce, _CHECK_PLAINTEXT, None)
            c.execute(
                sql.SQL("INSERT INTO {} VALUES (1, %s) ON CONFLICT (id) DO NOTHING").format(
                    self._check
                ),
                (sealed,),
            )
            c.execute(sql.SQL("SELECT sealed FROM {} WHERE id = 1").format(self._check))
            row = one_row(c)
        stored = bytes(row["sealed"])
        try:
            self._master.decrypt(stored[:12], stored[12:], None)
        except InvalidTag:
            raise MasterKeyError(
                "the master key (LEADENGINE_MASTER_KEY or its key file) is not the one this "
                f"database's lead keys were wrapped with (schema {self.datastore.schema}); "
                "every process must use the same master key"
            ) from None

    def _fetch(self, leads: list[UUID], *, create: bool) -> dict[UUID, bytes | None]:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            if create:
                c.executemany(
                    sql.SQL(
                        "INSERT INTO {} (lead_id, wrapped) VALUES (%s, %s) "
                        "ON CONFLICT (lead_id) DO NOTHING"
                    ).format(self._table),
                    [(lead, self.wrap(lead, os.urandom(32))) for lead in leads],
                )
            c.execute(
                sql.SQL("SELECT lead_id, wrapped FROM {} WHERE lead_id = ANY(%s)").format(
                    self._table
                ),
                (leads,),
            )
            rows = c.fetchall()
        out: dict[UUID, bytes | None] = {}
        for row in rows:
            lead = UUID(str(row["lead_id"]))
            wrapped = row["wrapped"]
            out[lead] = None if wrapped is None else self.unwrap(lead, bytes(wrapped))
        return out

    def shredded_with_prefix(self, prefix: str) -> list[UUID]:
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "SELECT lead_id FROM {} WHERE wrapped IS NULL "
                    "AND replace(lead_id::text, '-', '') LIKE %s"
                ).format(self._table),
                (prefix.replace("%", "").replace("_", "") + "%",),
            )
            return [UUID(str(row["lead_id"])) for row in c.fetchall()]

    def _shred(self, lead: UUID) -> bool:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "INSERT INTO {t} (lead_id, wrapped, shredded_at) VALUES (%s, NULL, now()) "
                    "ON CONFLICT (lead_id) DO UPDATE SET wrapped = NULL, "
                    "shredded_at = coalesce({t}.shredded_at, now()) "
                    "RETURNING (xmax <> 0) AS existed"
                ).format(t=self._table),
                (lead,),
            )
            row = c.fetchone()
        return bool(row and row["existed"])
