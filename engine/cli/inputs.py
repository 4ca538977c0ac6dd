"""Input files for `ingest` and `publish`: JSON Lines text, refused whole if it is not text."""

from __future__ import annotations

import codecs
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from engine.domain.errors import LeadEngineError

# Compressed or archived input by mistake: refused whole, not stored as junk dead letters.
MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def check_text(head: bytes, path: str) -> None:
    """Refuse input whose first bytes are not JSON Lines text (compressed, binary, not UTF-8)."""
    shown = "stdin" if path == "-" else path
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            raise LeadEngineError(
                f"{shown}: a {kind} file, not JSON Lines text; decompress it first "
                f"(e.g. {kind} -dc FILE | leadengine ingest -)"
            )
    if _mostly_binary(head):
        raise LeadEngineError(
            f"{shown}: binary data, not JSON Lines text (UTF-8, one CloudEvent per line); "
            "nothing was read"
        )


def _mostly_binary(head: bytes) -> bool:
    """Most lines of `head` hold NUL bytes or are not UTF-8: binary data, not text with a bad
    line or two (a bad line is the contract's business: refused with its reason and kept,
    nothing lost)."""
    lines = head.split(b"\n")
    bad = 0
    for i, line in enumerate(lines):
        try:
            codecs.getincrementaldecoder("utf-8")().decode(line, final=i < len(lines) - 1)
        except UnicodeDecodeError:
            bad += 1
        else:
            bad += b"\x00" in line
    return bad * 2 > len(lines)


def read_lines(path: str) -> Iterator[bytes]:
    """The lines of `path` (or stdin for `-`), refused at once if it is not text."""
    if path == "-":
        stream = cast(io.BufferedReader, sys.stdin.buffer)
        check_text(stream.peek(8192)[:8192], path)
        yield from stream
        return
    file = Path(path)
    if not file.is_file():
        raise LeadEngineError(f"cannot read {path}: no such file")
    with file.open("rb") as handle:
        check_text(handle.read(8192), path)
        handle.seek(0)
        yield from handle
