"""Engine-detected duplicates (docs/identity.md#duplicates): normalised values and their keyed
hashes, and who wins (pure).

Only a keyed hash (HMAC-SHA256 under a secret derived from the master key, as lead ids are) of
the normalised value is ever stored, never the value: the hash index cannot be reversed by
hashing guessed addresses without the secret.

Normalisation: an e-mail address is trimmed and lower-cased; dots and `+tags` in the local part
count (`ada.l+x@example.com` and `adal@example.com` are two values: providers differ on whether
they are one mailbox). A phone number keeps its digits only, and a leading `+`.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"leadengine duplicate match v1"
#: the contract field each match reads
FIELD = {"email": "email", "phone": "phone"}


def match_secret(master: bytes) -> bytes:
    """The secret duplicate hashes are keyed with, derived from (never equal to) the master key
    and distinct from the lead-id secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)


def normalise_email(value: str) -> str | None:
    """Trimmed, lower case; None if nothing is left or there is no `@` with text both sides."""
    v = value.strip().lower()
    local, at, domain = v.rpartition("@")
    return v if at and local and domain else None


def normalise_phone(value: str) -> str | None:
    """Digits only, a leading `+` kept; None if no digit is left."""
    v = value.strip()
    digits = "".join(c for c in v if c.isascii() and c.isdigit())
    if not digits:
        return None
    return ("+" if v.startswith("+") else "") + digits


def normalise(match: str, value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if match == "email":
        return normalise_email(value)
    if match == "phone":
        return normalise_phone(value)
    raise ValueError(f"duplicate match {match!r}: expected email or phone")


def match_hash(secret: bytes, match: str, normalised: str) -> str:
    """The keyed hash (hex) the index stores for a normalised value."""
    return hmac.new(secret, f"{match}:{normalised}".encode(), hashlib.sha256).hexdigest()


def seniority(first_seen: datetime, lead_id: UUID) -> tuple[datetime, str]:
    """Older wins: earliest first seen, then the smaller id."""
    return (first_seen, str(lead_id))
