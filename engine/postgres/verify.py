"""`leadengine verify` and `anchor`: recompute every hash chain from the stored bytes.

A break is reported with the aggregate (and its lead key), the version and what is wrong:
stored bytes changed (digest), a link that does not follow from the one before (rewritten or
reordered), an event missing (deleted), an event without its link (forged, or its links
deleted: the log is chained from `chain_start`), or an anchor that no longer matches (a
consistent rewrite, a forged or a truncated log: anchors count every event of the log).
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

from engine.aggregates.lead import Lead
from engine.domain.errors import LeadEngineError
from engine.postgres.chain import ANCHOR_TABLE, CHAIN_TABLE, START_TABLE, digest, link
from engine.postgres.db import Connection, Database
from engine.services.application import EVENTS_TABLE, LeadEngine

#: names an aggregate for a report (its lead key), or None
Names = Callable[[UUID], str | None]


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
    chained_from: int = 1
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchor, from the table or a file. Anchors written before migration 6 lack the
    last three fields and are checked on what they have."""

    upto: int
    events: int  # chained events up to `upto`
    anchor: str  # sha256 of their links in notification order (hex)
    where: str  # "table" or "file"
    log_events: int | None = None  # every event up to `upto`, chained or not
    chained_from: int | None = None
    heads: str | None = None  # sha256 (hex) of the heads kept in the table, to name leads


def _stream(db: Database, query: sql.Composed, params: tuple[Any, ...]) -> Iterator[Any]:
    with db.connect(autocommit=False) as conn, conn.cursor(name="verify") as cur:
        cur.itersize = 5000
        cur.execute(query, params)
        yield from cur


def chained_from(conn: Connection, schema: str) -> int:
    """Every event from this notification id on must have a link. No row (deleted): every
    event must, the strictest reading."""
    row = conn.execute(
        sql.SQL("SELECT chained_from FROM {}").format(sql.Identifier(schema, START_TABLE))
    ).fetchone()
    return int(row[0]) if row else 1


def _rows(db: Database, only: UUID | None) -> Iterator[Any]:
    s = sql.Identifier(db.schema)
    where = sql.SQL("WHERE coalesce(e.originator_id, c.originator_id) = %s" if only else "")
    query = sql.SQL(
        "SELECT coalesce(e.originator_id, c.originator_id), "
        "coalesce(e.originator_version, c.originator_version), e.topic, e.state, "
        "c.digest, c.entry, e.originator_id IS NOT NULL, c.originator_id IS NOT NULL, "
        "e.notification_id "
        "FROM {s}.{events} e FULL JOIN {s}.{chain} c "
        "ON c.originator_id = e.originator_id AND c.originator_version = e.originator_version "
        "{where} ORDER BY 1, 2"
    ).format(s=s, events=sql.Identifier(EVENTS_TABLE), chain=sql.Identifier(CHAIN_TABLE),
             where=where)  # fmt: skip
    return _stream(db, query, (only,) if only else ())


def _check_aggregate(rows: list[Any], report: Report) -> None:
    """The first break of one aggregate. Events recorded before hash chains (a positive
    notification id below `chained_from`) may lack links, but only before its first link."""
    agg = rows[0][0]
    previous, expected, linked = b"", 1, False
    for agg_id, version, topic, state, dig, entry, has_event, has_link, nid in rows:
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
            if not linked and 0 < nid < report.chained_from:
                continue  # recorded before hash chains existed
            report.breaks.append(
                Break(
                    agg,
                    version,
                    f"event (notification {nid}) has no chain link, but the log is chained "
                    f"from notification {report.chained_from}: inserted outside the engine, "
                    "or its links deleted",
                )
            )
            return
        linked = True
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
    if not linked:
        report.unchained_aggregates += 1


def verify(
    db: Database,
    only: UUID | None = None,
    *,
    anchors_file: Path | None = None,
    progress: Callable[[int], None] | None = None,
    names: Names | None = None,
) -> Report:
    """Check every chain (or `only` one aggregate's) and, for the whole log, the anchors of
    the table and of `anchors_file` (read first: a missing, empty or malformed file is an
    error, not zero anchors)."""
    from_file = read_anchors_file(anchors_file) if anchors_file is not None else []
    report = Report()
    with db.connect() as conn:
        report.chained_from = chained_from(conn, db.schema)
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
        _check_anchors(db, report, sorted(_table_anchors(db) + from_file, key=_order))
    if names is not None:
        _name(report, names)
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


# -- anchors -----------------------------------------------------------------------------------

HEAD_SIZE = 16 + 8 + 32  # aggregate id, version (big endian), link entry
#: fields of anchors written since migration 6 (older anchor lines lack them)
NEWER: tuple[tuple[str, type], ...] = (("log_events", int), ("chained_from", int), ("heads", str))


def _log_query(schema: str) -> sql.Composed:
    """Every event of the log in notification order, with its link (NULL: none)."""
    s = sql.Identifier(schema)
    return sql.SQL(
        "SELECT e.notification_id, c.entry FROM {s}.{events} e LEFT JOIN {s}.{chain} c "
        "ON c.originator_id = e.originator_id AND c.originator_version = e.originator_version "
        "ORDER BY e.notification_id"
    ).format(s=s, events=sql.Identifier(EVENTS_TABLE), chain=sql.Identifier(CHAIN_TABLE))


def _order(a: Anchor) -> tuple[int, str]:
    return a.upto, a.where


def _table_anchors(db: Database) -> list[Anchor]:
    with db.connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT upto_notification_id, events, encode(anchor, 'hex'), log_events, "
                    "chained_from FROM {}").format(sql.Identifier(db.schema, ANCHOR_TABLE))
        ).fetchall()  # fmt: skip
    return [Anchor(int(n), int(c), a, "table", lc, cf) for n, c, a, lc, cf in rows]


def _field(doc: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = doc.get(name)
    if kind is int and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise LeadEngineError(f"{where}: {name} must be a whole number >= 0, got {value!r:.40}")
    if kind is str:
        try:
            ok = isinstance(value, str) and len(bytes.fromhex(value)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise LeadEngineError(f"{where}: {name} must be a sha256 in hex, got {value!r:.80}")
    return value


def read_anchors_file(path: Path) -> list[Anchor]:
    """The anchors `leadengine anchor --file` appended, one JSON object a line. An anchors
    file is the trusted copy: if it cannot be read, nothing it should prove is checked, so
    missing, empty and malformed are errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LeadEngineError(
            f"anchors file {path} does not exist (`leadengine anchor --file {path}` writes it)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LeadEngineError(f"anchors file {path} cannot be read: {exc}") from None
    anchors = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"anchors file {path} line {number}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LeadEngineError(f"{where}: not JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise LeadEngineError(f"{where}: not an anchor (a JSON object), got {line:.40}")
        anchors.append(
            Anchor(
                _field(doc, "upto_notification_id", int, where),
                _field(doc, "events", int, where),
                _field(doc, "anchor", str, where),
                "file",
                *(_field(doc, n, kind, where) if n in doc else None for n, kind in NEWER),
            )
        )
    if not anchors:
        raise LeadEngineError(
            f"anchors file {path} is empty: no anchor to check (`leadengine anchor --file` "
            "appends one JSON object a line)"
        )
    return anchors


def _check_anchors(db: Database, report: Report, anchors: list[Anchor]) -> None:
    """Replay the log once, in notification order, stopping at each anchor: its links hash
    to the anchor, as many events are chained and (newer anchors) as many are in the log."""
    if not anchors:
        return
    h, chained, logged, last = hashlib.sha256(), 0, 0, 0
    stream = _stream(db, _log_query(db.schema), ())
    pending = next(stream, None)
    for a in anchors:
        while pending is not None and pending[0] <= a.upto:
            last, entry = int(pending[0]), pending[1]
            logged += 1
            if entry is not None:
                h.update(bytes(entry))
                chained += 1
            pending = next(stream, None)
        report.anchors_checked += 1
        problems = []
        if chained != a.events or h.copy().hexdigest() != a.anchor:
            problems.append(
                f"{a.events} chained events then, {chained} now, or their links differ "
                "(history rewritten)"
            )
        if a.log_events is not None and logged != a.log_events:
            problems.append(f"{a.log_events} events in the log up to it then, {logged} now")
        if pending is None and last < a.upto:
            problems.append(f"the log now ends at notification {last} (truncated)")
        if a.chained_from is not None and a.chained_from != report.chained_from:
            problems.append(
                f"the log was chained from notification {a.chained_from} then, "
                f"{report.chained_from} now ({START_TABLE} edited)"
            )
        if problems:
            report.breaks.extend(_anchor_breaks(db, a, "; ".join(problems)))
            return


def _anchor_breaks(db: Database, a: Anchor, problems: str) -> list[Break]:
    text = f"anchor ({a.where}) at notification {a.upto} does not match: {problems}"
    located = _locate(db, a)
    if not located:
        return [Break(UUID(int=0), a.upto, text)]
    return [Break(agg, version, f"{text}; {what}") for agg, version, what in located]


def _locate(db: Database, a: Anchor) -> list[tuple[UUID, int, str]]:
    """The aggregates whose head at the anchor (kept in the table, sealed by the anchor's
    `heads` digest when it comes from a file) is gone or has another link now."""
    with db.connect() as conn:
        row = conn.execute(
            sql.SQL("SELECT heads FROM {} WHERE upto_notification_id = %s")
            .format(sql.Identifier(db.schema, ANCHOR_TABLE)), (a.upto,)
        ).fetchone()  # fmt: skip
        blob = bytes(row[0]) if row and row[0] is not None else b""
        if not blob or (a.heads is not None and hashlib.sha256(blob).hexdigest() != a.heads):
            return []  # no heads kept, or the table's copy was edited: cannot tell which
        heads = [
            (UUID(bytes=blob[i : i + 16]), int.from_bytes(blob[i + 16 : i + 24], "big"),
             blob[i + 24 : i + HEAD_SIZE])
            for i in range(0, len(blob), HEAD_SIZE)
        ]  # fmt: skip
        s = sql.Identifier(db.schema)
        now = conn.execute(
            sql.SQL(
                "SELECT h.id, c.entry, e.originator_id IS NOT NULL "
                "FROM unnest(%s::uuid[], %s::bigint[]) AS h(id, v) "
                "LEFT JOIN {s}.{chain} c ON c.originator_id = h.id AND c.originator_version = h.v "
                "LEFT JOIN {s}.{events} e ON e.originator_id = h.id AND e.originator_version = h.v"
            ).format(s=s, chain=sql.Identifier(CHAIN_TABLE), events=sql.Identifier(EVENTS_TABLE)),
            ([h[0] for h in heads], [h[1] for h in heads]),
        ).fetchall()
    current = {agg: (entry, has_event) for agg, entry, has_event in now}
    located = []
    for agg, version, anchored in heads:
        entry, has_event = current[agg]
        if entry is None or not has_event:
            located.append((agg, version, f"version {version} of this aggregate is gone"))
        elif bytes(entry) != anchored:
            located.append((agg, version, f"its link at version {version} differs now"))
    return located


def anchor(db: Database, anchors_file: Path | None = None) -> dict[str, Any]:
    """Hash every link up to the newest notification and count every event of the log, in
    one snapshot; store it with the heads of the aggregates changed since the previous
    anchor (to name them if it breaks), and append it to a file."""
    h, chained, logged, upto = hashlib.sha256(), 0, 0, 0
    with db.connect(autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with conn.cursor(name="anchor") as cur:
            cur.itersize = 5000
            cur.execute(_log_query(db.schema))
            for nid, entry in cur:
                logged, upto = logged + 1, int(nid)
                if entry is not None:
                    h.update(bytes(entry))
                    chained += 1
        start = chained_from(conn, db.schema)
        blob = _heads(conn, db.schema, upto)
        doc = {
            "upto_notification_id": upto,
            "events": chained,
            "anchor": h.hexdigest(),
            "log_events": logged,
            "chained_from": start,
            "heads": hashlib.sha256(blob).hexdigest(),
        }
        conn.execute(
            sql.SQL(
                "INSERT INTO {t} (upto_notification_id, events, anchor, log_events, "
                "chained_from, heads) VALUES (%s, %s, decode(%s, 'hex'), %s, %s, %s) "
                "ON CONFLICT (upto_notification_id) DO UPDATE SET "  # fill, never change
                "log_events = coalesce({t}.log_events, excluded.log_events), "
                "chained_from = coalesce({t}.chained_from, excluded.chained_from), "
                "heads = coalesce({t}.heads, excluded.heads)"
            ).format(t=sql.Identifier(db.schema, ANCHOR_TABLE)),
            (upto, chained, doc["anchor"], logged, start, blob),
        )
        conn.commit()
    if anchors_file is not None:
        with anchors_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(doc) + "\n")
    return doc


def _heads(conn: Connection, schema: str, upto: int) -> bytes:
    """(aggregate, version, link) of the newest event up to `upto` of every aggregate with an
    event since the previous anchor, by aggregate id."""
    s = sql.Identifier(schema)
    rows = conn.execute(
        sql.SQL(
            "SELECT DISTINCT ON (e.originator_id) e.originator_id, e.originator_version, c.entry "
            "FROM {s}.{events} e JOIN {s}.{chain} c ON c.originator_id = e.originator_id "
            "AND c.originator_version = e.originator_version "
            "WHERE e.notification_id <= %(upto)s AND e.notification_id > (SELECT "
            "coalesce(max(upto_notification_id), 0) FROM {s}.{anchors} "
            "WHERE upto_notification_id < %(upto)s) "
            "ORDER BY e.originator_id, e.originator_version DESC"
        ).format(s=s, events=sql.Identifier(EVENTS_TABLE), chain=sql.Identifier(CHAIN_TABLE),
                 anchors=sql.Identifier(ANCHOR_TABLE)),
        {"upto": upto},
    ).fetchall()  # fmt: skip
    return b"".join(
        agg.bytes + int(version).to_bytes(8, "big") + bytes(entry) for agg, version, entry in rows
    )


# -- naming ------------------------------------------------------------------------------------


def _name(report: Report, names: Names) -> None:
    known: dict[UUID, str | None] = {UUID(int=0): None}
    for b in report.breaks:
        if b.aggregate not in known:
            known[b.aggregate] = names(b.aggregate)
    report.breaks = [
        Break(b.aggregate, b.version, b.problem, known[b.aggregate]) for b in report.breaks
    ]


def lead_names(app: LeadEngine) -> Names:
    """The lead key of an aggregate, from its first event decoded as the application does;
    None for other aggregates and for a first event that no longer decodes."""

    def name(aggregate: UUID) -> str | None:
        try:
            stored = app.recorder.select_events(aggregate, lte=1, limit=1)
            event = app.mapper.to_domain_event(stored[0]) if stored else None
        except Exception:  # tampered bytes fail in many ways; the aggregate id still names it
            return None
        return event.key if isinstance(event, Lead.Started) else None

    return name
