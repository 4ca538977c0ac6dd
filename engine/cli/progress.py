"""A progress line on stderr for long work (percentage, rate and ETA when the total is known);
silent when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        every: float = 0.2,
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0
        self.count = 0

    def update(self, count: int, extra: str = "") -> None:
        self.count = count
        now = time.monotonic()
        if not self.enabled or now - self._last < self.every:
            return
        self._last = now
        self._draw(extra)

    def _draw(self, extra: str) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.count / elapsed
        if self.total:
            frac = min(1.0, self.count / self.total)
            bar = "#" * int(frac * 24)
            eta = max(0.0, (self.total - self.count) / rate) if rate > 0 else None
            text = (
                f"{self.label} [{bar:<24}] {frac:4.0%} {self.count:,}/{self.total:,} "
                f"{rate:,.0f}/s eta {duration(eta)}"
            )
        else:
            text = f"{self.label} {self.count:,} {rate:,.0f}/s"
        self.stream.write(f"\r{text} {extra}\033[K")
        self.stream.flush()

    def done(self, extra: str = "") -> None:
        if self.enabled:
            self._draw(extra)
            self.stream.write("\n")
            self.stream.flush()


def duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `1h02m`; `?` before the first rate is known."""
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def count_lines(path: str) -> int | None:
    """Non-blank lines of a regular file, for a progress total; None for stdin or a pipe."""
    from pathlib import Path

    file = Path(path)
    if path == "-" or not file.is_file():
        return None
    with file.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
