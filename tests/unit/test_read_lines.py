"""`ingest` refuses binary input whole, but a text file with a bad line or two is read: the
bad lines are the contract's to refuse and keep (issue 13: nothing lost), not the file's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.commands.ops import read_lines
from engine.errors import LeadEngineError


def test_a_text_file_with_one_line_that_is_not_utf8_is_read_whole(tmp_path: Path) -> None:
    good = json.dumps({"id": "e-1"}).encode()
    path = tmp_path / "events.jsonl"
    path.write_bytes(good + b"\n" + b"\xff" + good + b"\n" + good + b"\n")
    assert [line.strip() for line in read_lines(str(path))] == [good, b"\xff" + good, good]


@pytest.mark.parametrize(
    "data",
    [bytes(range(256)) * 4, b"\xfe\xff" * 3000, b"\x80abc\n\xc3(\n\xff\xfe\n"],
    ids=["nul-bytes", "one-long-undecodable-line", "mostly-undecodable-lines"],
)
def test_binary_input_is_refused_before_a_line_is_read(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with pytest.raises(LeadEngineError, match="binary data, not JSON Lines text"):
        next(iter(read_lines(str(path))))
