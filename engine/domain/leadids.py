"""Lead ids: a keyed hash of the upstream key, so an id reveals nothing and cannot be guessed.

Upstream often keys a lead by its email address. `uuid5(key)` (what schemas made before
migration 7 use) can be reversed by hashing guessed addresses; a keyed hash cannot without the
secret. The secret is derived from the master key (HKDF-SHA256), so every process of a
deployment derives the same ids and nothing new has to be stored or distributed.

The scheme is recorded per schema (`lead_id_scheme`, migration 7): `keyed` for schemas made
since, `uuid5` for schemas that already had leads (their streams keep the ids they were
recorded under; re-keying would break the hash chains). After `forget`, every place that
showed the key shows `pseudonym(lead_id)` instead.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache, partial
from uuid import UUID, uuid5

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME_TABLE = "lead_id_scheme"
KEYED = "keyed"
UUID5 = "uuid5"
SCHEMES = (KEYED, UUID5)
#: the namespace of the uuid5 ids of schemas made before migration 7
NAMESPACE = UUID("6f1c2f4e-3b7a-5d1e-9c55-1e2d3c4b5a69")
_INFO = b"leadengine lead ids v1"


def id_secret(master: bytes) -> bytes:
    """The secret lead ids are keyed with, derived from (never equal to) the master key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)


def legacy_lead_id(key: str) -> UUID:
    """The id schemes before migration 7 gave the lead `key` (guessable: uuid5 of the key)."""
    return uuid5(NAMESPACE, f"lead:{key}")


def keyed_lead_id(secret: bytes, key: str) -> UUID:
    """HMAC-SHA256 of the key, as a version 8 (custom) UUID."""
    digest = hmac.new(secret, f"lead:{key}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest[:16], "big")
    n = (n & ~(0xF << 76)) | (0x8 << 76)  # version 8
    n = (n & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return UUID(int=n)


def pseudonym(lead_id: UUID) -> str:
    """What is shown instead of a forgotten lead's key: stable, and derived from its id only."""
    return f"erased-{lead_id.hex[:12]}"


class LeadIds:
    """The lead id function of one deployment and schema: pure, and cached."""

    def __init__(self, secret: bytes, scheme: str = KEYED, cache_size: int = 100_000) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"lead id scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
        self.scheme = scheme
        derive: Callable[[str], UUID] = (
            legacy_lead_id if scheme == UUID5 else partial(keyed_lead_id, secret)
        )
        self._derive: Callable[[str], UUID] = lru_cache(maxsize=cache_size)(derive)

    def __call__(self, key: str) -> UUID:
        return self._derive(key)

    def __repr__(self) -> str:  # never the secret
        return f"LeadIds(scheme={self.scheme})"
