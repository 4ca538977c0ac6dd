"""Ingest JSON Lines of CloudEvents: validate each line, batch the good, dead-letter the bad.

A line whose (source, id) is stored with other content is a conflict, kept as a dead letter
too. A batch that loses a version conflict to another writer (two `ingest`s or consumers
routing leads of one queue) is redone on fresh reads, like `consume` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.consumers.retry import RaceStats, store_racing
from engine.domain.contract import Envelope, parse_event
from engine.domain.errors import InvalidEvent
from engine.logs import get_logger
from engine.postgres.deadletters import DeadLetter, DeadLetterStore
from engine.services.application import IngestResult, LeadEngine

log = get_logger("leadengine.ingest")


@dataclass
class LinesReport:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # forgotten leads' personal data under privacy.after_erasure: drop
    rejected: int = 0
    conflicts: int = 0  # a stored event's (source, id) with other content: dead-lettered
    unknown_fields: int = 0  # fields the contract did not know, kept (rules `contract`)
    race: RaceStats = field(default_factory=RaceStats)

    def as_dict(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": self.rejected,
            "conflicts": self.conflicts,
            "unknown_fields": self.unknown_fields,
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
    unknown = app.rules.contract.unknown_fields
    good: list[Envelope] = []
    kept: list[tuple[str, bytes]] = []  # each good line's origin and bytes
    bad: list[DeadLetter] = []

    def keep_conflicts(result: IngestResult) -> None:
        """Before the batch commits: a crash after it must not lose a refused line."""
        deadletters.add([DeadLetter(*kept[i], error) for i, error in result.rejected])

    def flush() -> None:
        if good:
            result = store_racing(
                lambda: app.ingest(good, keep_rejected=keep_conflicts),
                stats=report.race,
                what="record batch",
                log=log,
            )
            assert result is not None  # no settled(): every conflict is redone
            report.accepted += result.accepted
            report.duplicates += result.duplicates
            report.ignored += result.ignored
            report.conflicts += result.conflicts
            report.unknown_fields += result.unknown_fields
            good.clear()
            kept.clear()
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
            good.append(parse_event(line, max_bytes=max_bytes, unknown_fields=unknown))
            kept.append((f"{origin}:{number}", line))
        except InvalidEvent as exc:
            bad.append(DeadLetter(f"{origin}:{number}", line, exc))
        if len(good) >= batch_size:
            flush()
    flush()
    return report
