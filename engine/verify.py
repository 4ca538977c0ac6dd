"""`leadengine verify` and `anchor`: recompute every hash chain from the stored bytes.

A break is reported with the aggregate, the version and what is wrong: stored bytes changed
(digest), a link that does not follow from the one before (rewritten or reordered), an event
missing (deleted), an event without its link, or an anchor that no longer matches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from psycopg import sql

from engine.application import EVENTS_TABLE
from engine.chain import ANCHOR_TABLE, CHAIN_TABLE, digest, link
from engine.db import Database


@dataclass(frozen=True, slots=True)
class Break:
    aggregate: UUID
    version: int
    problem: str
    key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"aggregate": str(self.aggregate), "key": self.key, "version": self.version,
                "problem": self.problem}  # fmt: skip


@dataclass
class Report:
    aggregates: int = 0
    events: int = 0
    unchained_aggregates: int = 0
    notification_gaps: int = 0
    anchors_checked: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


def _stream(db: Database, query: sql.Composed, params: tuple[Any, ...]) -> Iterator[Any]:
    with db.connect(autocommit=False) as conn, conn.cursor(name="verify") as cur:
        cur.itersize = 5000
        cur.execute(query, params)
        yield from cur


def _rows(db: Database, only: UUID | None) -> Iterator[Any]:
    s = sql.Identifier(db.schema)
    where = sql.SQL("WHERE coalesce(e.originator_id, c.originator_id) = %s" if only else "")
    query = sql.SQL(
        "SELECT coalesce(e.originator_id, c.originator_id), "
        "coalesce(e.originator_version, c.originator_version), e.topic, e.state, "
        "c.digest, c.entry, e.originator_id IS NOT NULL, c.originator_id IS NOT NULL "
        "FROM {s}.{events} e FULL JOIN {s}.{chain} c "
        "ON c.originator_id = e.originator_id AND c.originator_version = e.originator_version "
        "{where} ORDER BY 1, 2"
    ).format(s=s, events=sql.Identifier(EVENTS_TABLE), chain=sql.Identifier(CHAIN_TABLE),
             where=where)  # fmt: skip
    return _stream(db, query, (only,) if only else ())


def _check_aggregate(rows: list[Any], report: Report) -> None:
    agg = rows[0][0]
    if not any(r[7] for r in rows):
        report.unchained_aggregates += 1  # recorded before hash chains existed
        return
    previous = b""
    expected = 1
    for agg_id, version, topic, state, dig, entry, has_event, has_link in rows:
        if version != expected:
            report.breaks.append(
                Break(
                    agg,
                    expected,
                    f"versions {expected}..{version - 1} missing (event and link deleted)",
                )
            )
            return
        expected += 1
        if not has_event:
            report.breaks.append(Break(agg, version, "event missing (deleted); its link remains"))
            return
        if not has_link:
            report.breaks.append(
                Break(agg, version, "event has no chain link (inserted outside the engine)")
            )
            return
        if digest(agg_id, version, topic, bytes(state)) != bytes(dig):
            report.breaks.append(
                Break(
                    agg,
                    version,
                    "stored bytes changed (digest differs), or the event was moved to this version",
                )
            )
            return
        if link(previous, bytes(dig)) != bytes(entry):
            report.breaks.append(
                Break(
                    agg,
                    version,
                    "link does not follow from the previous one (chain rewritten or reordered)",
                )
            )
            return
        previous = bytes(entry)


def verify(
    db: Database,
    only: UUID | None = None,
    *,
    anchors_file: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    report = Report()
    current: list[Any] = []
    for row in _rows(db, only):
        if current and row[0] != current[0][0]:
            _check_aggregate(current, report)
            report.aggregates += 1
            current = []
        current.append(row)
        report.events += 1
        if progress and report.events % 10_000 == 0:
            progress(report.events)
    if current:
        _check_aggregate(current, report)
        report.aggregates += 1
    if only is None:
        report.notification_gaps = _gaps(db)
        _check_anchors(db, report, anchors_file)
    _name_leads(db, report)
    return report


def _gaps(db: Database) -> int:
    """Notification ids never used: a rolled-back insert leaves one, so a gap alone is not a
    break; a deleted event is caught by its chain."""
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*), min(notification_id), max(notification_id) FROM {}")
            .format(sql.Identifier(db.schema, EVENTS_TABLE))
        ).fetchone()  # fmt: skip
    if not row or not row[0]:
        return 0
    count, low, high = row
    return int(high - low + 1 - count)


def _anchor_stream(db: Database) -> Iterator[tuple[int, bytes]]:
    s = sql.Identifier(db.schema)
    query = sql.SQL(
        "SELECT e.notification_id, c.entry FROM {s}.{events} e JOIN {s}.{chain} c "
        "ON c.originator_id = e.originator_id AND c.originator_version = e.originator_version "
        "ORDER BY e.notification_id"
    ).format(s=s, events=sql.Identifier(EVENTS_TABLE), chain=sql.Identifier(CHAIN_TABLE))
    for nid, entry in _stream(db, query, ()):
        yield int(nid), bytes(entry)


def _stored_anchors(db: Database, anchors_file: Path | None) -> list[tuple[int, int, str, str]]:
    with db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT upto_notification_id, events, encode(anchor, 'hex') FROM {}")
            .format(sql.Identifier(db.schema, ANCHOR_TABLE))
        ).fetchall()  # fmt: skip
    anchors = [(int(n), int(c), a, "table") for n, c, a in rows]
    if anchors_file is not None and anchors_file.exists():
        for line in anchors_file.read_text().splitlines():
            if line.strip():
                d = json.loads(line)
                anchors.append((d["upto_notification_id"], d["events"], d["anchor"], "file"))
    return sorted(anchors)


def _check_anchors(db: Database, report: Report, anchors_file: Path | None) -> None:
    anchors = _stored_anchors(db, anchors_file)
    if not anchors:
        return
    h, count, stream = hashlib.sha256(), 0, _anchor_stream(db)
    pending = next(stream, None)
    for upto, events, expected, where in anchors:
        while pending is not None and pending[0] <= upto:
            h.update(pending[1])
            count += 1
            pending = next(stream, None)
        report.anchors_checked += 1
        if count != events or h.copy().hexdigest() != expected:
            report.breaks.append(
                Break(
                    UUID(int=0),
                    upto,
                    f"anchor ({where}) at notification "
                    f"{upto} does not match: {events} events then, {count} "
                    "now, or their links differ (history rewritten)",
                )
            )
            return


def anchor(db: Database, anchors_file: Path | None = None) -> dict[str, Any]:
    """Hash every link up to the newest notification; store it, and append it to a file."""
    h, count, upto = hashlib.sha256(), 0, 0
    for nid, entry in _anchor_stream(db):
        h.update(entry)
        count, upto = count + 1, nid
    doc = {"upto_notification_id": upto, "events": count, "anchor": h.hexdigest()}
    with db.connect() as conn:
        conn.execute(
            sql.SQL("INSERT INTO {} (upto_notification_id, events, anchor) VALUES "
                    "(%s, %s, decode(%s, 'hex')) ON CONFLICT DO NOTHING")
            .format(sql.Identifier(db.schema, ANCHOR_TABLE)),
            (upto, count, doc["anchor"]),
        )  # fmt: skip
    if anchors_file is not None:
        with anchors_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc) + "\n")
    return doc


def _name_leads(db: Database, report: Report) -> None:
    if not report.breaks:
        return
    ids = [b.aggregate for b in report.breaks]
    with db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT lead_id, lead_key FROM {} WHERE lead_id = ANY(%s)")
            .format(sql.Identifier(db.schema, "lead_state")), (ids,)
        ).fetchall()  # fmt: skip
    keys = dict(rows)
    report.breaks = [
        Break(b.aggregate, b.version, b.problem, keys.get(b.aggregate)) for b in report.breaks
    ]
