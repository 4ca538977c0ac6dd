"""The master key: from the setting, a key file, or one made once under the engine's home.

It wraps every lead's data key (engine/postgres/keystore.py); every process of one database must
use the same one.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from pydantic import SecretStr

from engine.domain.errors import LeadEngineError


class MasterKeyError(LeadEngineError):
    """The master key is missing, malformed, or not the one this database was set up with."""


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
