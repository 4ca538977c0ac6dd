"""Right to erasure by crypto-shredding: personal data is stored encrypted with a key per lead.

What is encrypted: the payload fields the event contract marks `x-pii` (email, name, phone, a
call's notes), in `Lead.FactRecorded` events, with AES-256-GCM under the lead's own key. The
rest of the payload stays in clear, plus one derived attribute, `email_domain`, so fit rules
that look at the domain score the same after the address is gone.

Stored form of `data`: the clear fields, `email_domain` if there was an email, and
`"_pii": {"fields": [...], "sealed": base64(nonce || ciphertext)}`. The ciphertext is bound to
the lead and the event version (associated data), so a sealed value cannot be moved to another
event unnoticed.

Keys: `lead_keys(lead_id, wrapped, created_at, shredded_at)`, each key wrapped (AES-GCM) by the
master key from settings (`LEADENGINE_MASTER_KEY`, a `SecretStr`, or a key file). `shred` wipes
the wrapped key and leaves a tombstone, so no process can mint a new key for a forgotten lead.
Once shredded, a sealed value reads back as the field names only: `"_erased": [...]`.

Event attributes named in an event class's `SEALED_FIELDS` (the lead key of `Lead.Started`) are
sealed the same way, at the top level of the stored state (`"_pii"` beside them) with the
attribute itself stored as the lead's pseudonym. Every mapper with keys opens them (read models
show a lead's key until it is forgotten); once the key is shredded they read as the pseudonym.

A fact's kept unknown fields (`FactRecorded.extra`: what the contract did not name) are
personal data by default: stored as `{"_pii": {"sealed": ...}}` under the same key, bound to
the lead, the version and the word `extra`; once shredded they read back as `{"_erased": true}`.
A fact without any stores no `extra` at all.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic
from psycopg import sql
from pydantic import SecretStr

from engine.contract import present_pii
from engine.errors import LeadEngineError
from engine.facts import ERASED_KEY as ERASED
from engine.facts import email_domain
from engine.leadids import pseudonym

SEALED = "_pii"
KEYS_TABLE = "lead_keys"
CHECK_TABLE = "master_key_check"
_CHECK_PLAINTEXT = b"leadengine master key check v1"


class MasterKeyError(LeadEngineError):
    """The master key is missing, malformed, or not the one this database was set up with."""


class ShreddedKey(LeadEngineError):
    """Personal data was about to be sealed for a lead whose key is already shredded."""


def parse_master_key(value: SecretStr, origin: str) -> bytes:
    raw = value.get_secret_value().strip()
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise MasterKeyError(
            f"{origin}: expected 32 random bytes in base64, got {len(key)} bytes; make one "
            "with: python -c 'import os,base64;print(base64.urlsafe_b64encode(os.urandom(32))"
            ".decode())'"
        )
    return key


def load_master_key(secret: SecretStr | None, key_file: Path | None, home: Path) -> bytes:
    """The master key: the setting, else the key file, else `home/master.key` (created 0600)."""
    if secret is not None:
        return parse_master_key(secret, "LEADENGINE_MASTER_KEY")
    path = key_file or home / "master.key"
    if not path.exists():
        if key_file is not None:
            raise MasterKeyError(f"LEADENGINE_MASTER_KEY_FILE {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    return parse_master_key(SecretStr(path.read_text()), str(path))


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

    def __init__(self, datastore: Any, master: bytes, cache_size: int = 50_000) -> None:
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
            row = c.fetchone()
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


def _aad(lead: UUID, version: int) -> bytes:
    return lead.bytes + int(version).to_bytes(8, "big")


#: what a fact's `extra` is bound to besides its lead and version (never mistaken for `data`)
_EXTRA_AAD = b"extra"


def _shadow(domain_event: Any, **changes: Any) -> Any:
    """A copy of `domain_event` with `changes` (None: attribute left out); the original is
    untouched (the aggregate keeps its plaintext in memory)."""
    state = {**vars(domain_event), **changes}
    for name in [k for k, v in changes.items() if v is None]:
        del state[name]
    shadow = object.__new__(type(domain_event))
    object.__setattr__(shadow, "__dict__", state)
    return shadow


class PiiMapper(Mapper[UUID]):
    """eventsourcing's mapper, sealing the personal fields of each lead fact with its lead's key.

    `reveal=False` gives a mapper that never opens sealed values (projections need none)."""

    def __init__(self, *args: Any, reveal: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys: KeyStore | None = None
        self.reveal = reveal

    def sealing(self, reveal: bool) -> PiiMapper:
        other = PiiMapper(self.transcoder, self.compressor, self.cipher, reveal=reveal)
        other.keys = self.keys
        return other

    def prefetch_keys(self, stored: Iterable[StoredEvent]) -> None:
        """Cache, in one round trip, the keys that open the sealed attributes of `stored`."""
        if self.keys is not None:
            self.keys.prefetch(
                UUID(str(s.originator_id)) for s in stored if _sealed_fields(s.topic)
            )

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        attributes: tuple[str, ...] = getattr(type(domain_event), "SEALED_FIELDS", ())
        if attributes and self.keys is not None:
            return super().to_stored_event(self._seal_attributes(domain_event, attributes))
        domain_event = self._seal_extra(domain_event)
        data = getattr(domain_event, "data", None)
        event_type = getattr(domain_event, "event_type", None)
        if self.keys is None or not isinstance(data, dict) or not isinstance(event_type, str):
            return super().to_stored_event(domain_event)
        fields = present_pii(event_type, data)
        if not fields:
            return super().to_stored_event(domain_event)
        lead, version = domain_event.originator_id, domain_event.originator_version
        key = self.keys.key_for(lead, create=True)
        assert key is not None
        nonce = os.urandom(12)
        plain = json.dumps({f: data[f] for f in fields}, sort_keys=True).encode()
        sealed = nonce + AESGCM(key).encrypt(nonce, plain, _aad(lead, version))
        stored = {k: v for k, v in data.items() if k not in fields}
        if "email" in fields and "email_domain" not in stored:
            stored["email_domain"] = email_domain(data["email"])
        stored[SEALED] = {"fields": fields, "sealed": base64.b64encode(sealed).decode()}
        # the domain event is left as it is (the aggregate keeps its plaintext in memory)
        shadow = object.__new__(type(domain_event))
        object.__setattr__(shadow, "__dict__", {**vars(domain_event), "data": stored})
        return super().to_stored_event(shadow)

    def _seal_attributes(self, domain_event: Any, fields: tuple[str, ...]) -> Any:
        """A copy of `domain_event` whose `fields` are sealed with its lead's key."""
        assert self.keys is not None
        lead, version = domain_event.originator_id, domain_event.originator_version
        key = self.keys.key_for(lead, create=True)
        assert key is not None
        nonce = os.urandom(12)
        plain = json.dumps({f: getattr(domain_event, f) for f in fields}, sort_keys=True).encode()
        sealed = nonce + AESGCM(key).encrypt(nonce, plain, _aad(lead, version))
        state = {**vars(domain_event), **{f: pseudonym(lead) for f in fields}}
        state[SEALED] = {"fields": list(fields), "sealed": base64.b64encode(sealed).decode()}
        shadow = object.__new__(type(domain_event))
        object.__setattr__(shadow, "__dict__", state)
        return shadow

    def _open_attributes(self, event: Any) -> Any:
        """Put back the sealed attributes, if the lead's key still exists (else: pseudonyms)."""
        attrs = vars(event)
        sealed = attrs.pop(SEALED)
        lead, version = event.originator_id, event.originator_version
        key = self.keys.key_for(lead, create=False) if self.keys is not None else None
        if key is not None:
            blob = base64.b64decode(sealed["sealed"])
            attrs.update(json.loads(_decrypt(key, blob, lead, version)))
        return event

    def _seal_extra(self, domain_event: Any) -> Any:
        """`domain_event` with its kept unknown fields sealed (left out when it has none)."""
        if "extra" not in vars(domain_event):
            return domain_event
        extra = vars(domain_event)["extra"]
        if not extra:
            return _shadow(domain_event, extra=None)
        lead, version = domain_event.originator_id, domain_event.originator_version
        key = self.keys.key_for(lead, create=True) if self.keys is not None else None
        if key is None:  # no key store: a mapper outside the engine; nothing kept in clear
            return _shadow(domain_event, extra=None)
        nonce = os.urandom(12)
        plain = json.dumps(extra, sort_keys=True).encode()
        blob = nonce + AESGCM(key).encrypt(nonce, plain, _aad(lead, version) + _EXTRA_AAD)
        return _shadow(domain_event, extra={SEALED: {"sealed": base64.b64encode(blob).decode()}})

    def _open_extra(self, event: Any) -> Any:
        """Open a fact's sealed `extra` in place; `{"_erased": true}` once its key is gone."""
        extra = vars(event).get("extra")
        if not isinstance(extra, dict) or SEALED not in extra:
            return event
        key = None
        if self.reveal and self.keys is not None:
            key = self.keys.key_for(event.originator_id, create=False)
        if key is None:
            vars(event)["extra"] = {ERASED: True}
            return event
        blob = base64.b64decode(extra[SEALED]["sealed"])
        aad = _aad(event.originator_id, event.originator_version) + _EXTRA_AAD
        try:
            plain = AESGCM(key).decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise LeadEngineError(
                f"sealed unknown fields of lead {event.originator_id} version "
                f"{event.originator_version} do not open with its key (tampered or moved)"
            ) from None
        vars(event)["extra"] = json.loads(plain)
        return event

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        event = super().to_domain_event(stored_event)
        if SEALED in vars(event):
            return self._open_attributes(event)
        attributes: tuple[str, ...] = getattr(type(event), "SEALED_FIELDS", ())
        if attributes and self.keys is not None and self.keys.shredded(event.originator_id):
            # stored in clear before migration 7: shown as the pseudonym once forgotten
            vars(event).update({f: pseudonym(event.originator_id) for f in attributes})
            return event
        event = self._open_extra(event)
        data = getattr(event, "data", None)
        if not isinstance(data, dict) or SEALED not in data:
            return event
        sealed = data.pop(SEALED)
        fields = list(sealed["fields"])
        key = None
        if self.reveal and self.keys is not None:
            key = self.keys.key_for(event.originator_id, create=False)
        if key is None:
            data[ERASED] = fields
            return event
        blob = base64.b64decode(sealed["sealed"])
        data.update(json.loads(_decrypt(key, blob, event.originator_id, event.originator_version)))
        return event


def _decrypt(key: bytes, blob: bytes, lead: UUID, version: int) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], _aad(lead, version))
    except InvalidTag:
        raise LeadEngineError(
            f"sealed personal data of lead {lead} version {version} does not open with its key "
            "(tampered or moved)"
        ) from None


def _sealed_fields(topic: str) -> tuple[str, ...]:
    """The attributes the event class of `topic` keeps sealed (`SEALED_FIELDS`), if any."""
    return tuple(getattr(resolve_topic(topic), "SEALED_FIELDS", ()))
