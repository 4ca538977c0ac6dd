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
import json
import os
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from engine.domain.contract import present_pii
from engine.domain.errors import LeadEngineError
from engine.domain.facts import ERASED_KEY as ERASED
from engine.domain.facts import email_domain
from engine.domain.leadids import pseudonym
from engine.postgres.keystore import KeyStore

SEALED = "_pii"


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
