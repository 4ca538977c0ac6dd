"""`OUT.html` / `-o FILE` are checked before any work: an empty name is said to be one, not
taken for the working directory ("cannot write : it is a directory")."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli.args import output_file


@pytest.mark.parametrize("text", ["", " ", "\t"])
def test_an_empty_file_name_is_refused_as_empty(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        output_file(text)
    assert str(exc.value) == f"expected a file name, got {text!r}"


def test_a_directory_and_a_missing_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="it is a directory"):
        output_file(str(tmp_path))
    with pytest.raises(argparse.ArgumentTypeError, match="does not exist; create it first"):
        output_file(str(tmp_path / "no" / "x.html"))
    assert output_file(str(tmp_path / "x.html")) == tmp_path / "x.html"
