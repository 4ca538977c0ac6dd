"""Progress on a terminal shows percentage, rate and ETA; anywhere else it is silent."""

from __future__ import annotations

import io

from engine.cli.progress import Progress, count_lines, duration


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_known_total_shows_percentage_and_eta() -> None:
    stream = Tty()
    bar = Progress("ingest", 200, stream=stream, every=0)
    bar.update(50)
    bar.update(200)
    bar.done()
    first, last = stream.getvalue().split("\r")[1], stream.getvalue().split("\r")[-1]
    assert "25%" in first and "50/200" in first and "eta " in first and "eta ?" not in first
    assert "100%" in last and "eta 0s" in last and stream.getvalue().endswith("\n")


def test_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = Progress("ingest", 10, stream=stream, every=0)
    bar.update(5)
    bar.done()
    assert stream.getvalue() == "" and not bar.enabled


def test_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (None, 4.4, 65, 3725)] == ["?", "4s", "1m05s", "1h02m"]


def test_count_lines_skips_blank_lines_and_knows_nothing_of_stdin(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "x.jsonl"
    path.write_bytes(b"a\n\n  \nb\nc")
    assert count_lines(str(path)) == 3
    assert count_lines("-") is None
