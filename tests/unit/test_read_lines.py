"""`ingest` refuses binary input whole, but a text file with a bad line or two is read: the
bad lines are the contract's to refuse and keep (issue 13: nothing lost), not the file's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli.inputs import read_lines
from engine.domain.errors import LeadEngineError


@pytest.mark.parametrize("bad", [b"\xff", b"\x00"], ids=["not-utf8", "nul-byte"])
def test_a_text_file_with_one_bad_line_is_read_whole(tmp_path: Path, bad: bytes) -> None:
    good = json.dumps({"id": "e-1"}).encode()
    path = tmp_path / "events.jsonl"
    path.write_bytes(good + b"\n" + bad + good + b"\n" + good + b"\n")
    assert [line.strip() for line in read_lines(str(path))] == [good, bad + good, good]


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
