"""Ingest JSON Lines of CloudEvents: validate each line, batch the good, dead-letter the bad."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from engine.application import IngestResult, LeadEngine
from engine.contract import Envelope, parse_event
from engine.deadletters import DeadLetter, DeadLetterStore
from engine.errors import InvalidEvent


@dataclass
class LinesReport:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # forgotten leads' personal data under privacy.after_erasure: drop
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": self.rejected,
        }


def ingest_lines(
    lines: Iterable[bytes],
    *,
    origin: str,
    app: LeadEngine,
    deadletters: DeadLetterStore,
    batch_size: int = 500,
    max_bytes: int = 256 * 1024,
    progress: Callable[[LinesReport], None] | None = None,
) -> LinesReport:
    """Ingest raw lines; blank lines are skipped, every other line is accepted or kept."""
    report = LinesReport()
    good: list[Envelope] = []
    bad: list[DeadLetter] = []

    def flush() -> None:
        if good:
            result: IngestResult = app.ingest(good)
            report.accepted += result.accepted
            report.duplicates += result.duplicates
            report.ignored += result.ignored
            good.clear()
        if bad:
            deadletters.add(bad)
            report.rejected += len(bad)
            bad.clear()
        if progress:
            progress(report)

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        report.lines += 1
        try:
            good.append(parse_event(line, max_bytes=max_bytes))
        except InvalidEvent as exc:
            bad.append(DeadLetter(f"{origin}:{number}", line, exc))
        if len(good) >= batch_size:
            flush()
    flush()
    return report
