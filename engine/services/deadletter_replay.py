"""Replay kept dead letters (the `dead_letters` table) through the path `ingest` takes.

Each row's raw bytes are parsed and recorded again, in id order, in batches. A row whose record
now passes (stored, or already stored: a duplicate, or dropped for a forgotten lead) is deleted:
the event store holds it now, and the table lists only what is still refused. A row that fails
again stays, bytes untouched, with its reason replaced by the new one. A crash between the
store's commit and the delete leaves the row; the next replay finds it a duplicate and deletes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from engine.consumers.retry import RaceStats, store_racing
from engine.domain.contract import Envelope, UnknownFields, parse_event
from engine.domain.errors import InvalidEvent
from engine.logs import get_logger
from engine.postgres.deadletters import DeadLetterStore, KeptLetter
from engine.services.application import IngestResult, LeadEngine

log = get_logger("leadengine.deadletters")


@dataclass
class ReplayReport:
    selected: int = 0  # rows read back
    stored: int = 0  # recorded now
    duplicates: int = 0  # already stored (the same source and id, the same content)
    ignored: int = 0  # personal data for a forgotten lead: dropped
    still_rejected: int = 0  # refused again, kept with the new reason
    missing: list[int] = field(default_factory=list)  # --id values with no row
    race: RaceStats = field(default_factory=RaceStats)

    @property
    def resolved(self) -> int:
        return self.stored + self.duplicates + self.ignored

    def as_dict(self) -> dict[str, int | list[int]]:
        return {
            "selected": self.selected,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "still_rejected": self.still_rejected,
            "missing_ids": self.missing,
        }


@dataclass
class DryRunReport:
    selected: int = 0
    would_retry: int = 0  # pass the contract now (a conflict shows only on a real replay)
    still_invalid: int = 0
    missing: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, int | list[int]]:
        return {
            "selected": self.selected,
            "would_retry": self.would_retry,
            "still_invalid": self.still_invalid,
            "missing_ids": self.missing,
        }


def _pages(
    store: DeadLetterStore, ids: Sequence[int] | None, batch_size: int, seen: set[int]
) -> Iterator[list[KeptLetter]]:
    """The selected rows (all when `ids` is None) in id order, a page at a time; `seen`
    collects their ids (a replay deletes rows as it goes: the cursor is the last id read)."""
    after = 0
    while batch := store.kept(ids, after=after, limit=batch_size):
        after = batch[-1].id
        seen.update(row.id for row in batch)
        yield batch


def _missing(ids: Sequence[int] | None, seen: set[int]) -> list[int]:
    return sorted(set(ids) - seen) if ids is not None else []


def dry_run(
    store: DeadLetterStore,
    ids: Sequence[int] | None,
    *,
    max_bytes: int,
    batch_size: int = 500,
    unknown_fields: UnknownFields = "keep",
) -> DryRunReport:
    """What a replay would try: the rows that pass the contract now (read as the rules say:
    `unknown_fields`, as the replay itself reads them), and those that do not."""
    report = DryRunReport()
    seen: set[int] = set()
    for batch in _pages(store, ids, batch_size, seen):
        for row in batch:
            report.selected += 1
            try:
                parse_event(row.raw, max_bytes=max_bytes, unknown_fields=unknown_fields)
                report.would_retry += 1
            except InvalidEvent:
                report.still_invalid += 1
    report.missing = _missing(ids, seen)
    return report


def replay(
    app: LeadEngine,
    store: DeadLetterStore,
    ids: Sequence[int] | None,
    *,
    max_bytes: int,
    batch_size: int = 500,
    progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Record the selected rows again (all when `ids` is None); see the module docstring."""
    report = ReplayReport()
    seen: set[int] = set()
    for batch in _pages(store, ids, batch_size, seen):
        report.selected += len(batch)
        _replay_batch(app, store, batch, report, max_bytes)
        if progress:
            progress(report)
    report.missing = _missing(ids, seen)
    return report


def _replay_batch(
    app: LeadEngine,
    store: DeadLetterStore,
    batch: list[KeptLetter],
    report: ReplayReport,
    max_bytes: int,
) -> None:
    good: list[Envelope] = []
    good_ids: list[int] = []
    unknown = app.rules.contract.unknown_fields  # as `ingest` reads them
    for row in batch:
        try:
            good.append(parse_event(row.raw, max_bytes=max_bytes, unknown_fields=unknown))
            good_ids.append(row.id)
        except InvalidEvent as exc:
            store.refused_again(row.id, exc)
            report.still_rejected += 1
    if not good:
        return
    refused: set[int] = set()

    def keep(result: IngestResult) -> None:
        """Before the batch commits: the refused rows get their new reason."""
        for index, error in result.rejected:
            store.refused_again(good_ids[index], error)
            refused.add(good_ids[index])

    def attempt() -> IngestResult:
        refused.clear()  # a redone batch decides afresh
        return app.ingest(good, keep_rejected=keep)

    result = store_racing(attempt, stats=report.race, what="replay dead letters", log=log)
    assert result is not None  # no settled(): every conflict is redone
    report.stored += result.accepted
    report.duplicates += result.duplicates
    report.ignored += result.ignored
    report.still_rejected += result.conflicts
    store.delete([i for i in good_ids if i not in refused])
