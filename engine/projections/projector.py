"""The read-model projector: follows the notification log in micro-batches.

The read model is four named projections (`PROJECTIONS`, engine/projections/layout.py), each a
group of tables with its own position in `projection_tracking`. One pass over the log serves
all those asked for (`only`): each batch (many notifications) is decoded once and folded in
memory onto the leads it touches (engine/projections/fold.py), then written with one COPY into
a staging table and one merge per table (engine/projections/bulk.py), with every projection's
new position, in one transaction: rows and tracking commit together, so a crash at any point
resumes exactly where the last commit left off, and re-running changes nothing. A projection
that is behind the others (just rebuilt, or run alone with `--only`) gets only the events past
its own position.

`bulk_load` is the rebuild path (engine/projections/rebuild.py): the same fold, empty tables,
the whole log, every aggregate kept in memory, rows COPYed straight in and each lead's final
rows written once.

One bad lead never stops a projection: an aggregate that fails to decode, fold or make its rows,
or whose row the database rejects, is parked for that projection (engine/projections/parking.py)
and the rest of the batch commits. A rejected batch is written again with each aggregate's rows
in a savepoint of their own, to find the offenders. `reproject` re-folds parked aggregates
(`leadengine projections retry`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import Cursor, sql

from engine import metrics
from engine.aggregates.account import Account
from engine.aggregates.lead import Lead
from engine.logs import get_logger
from engine.postgres.db import Database
from engine.postgres.dependents import qualified
from engine.projections import accounts, bulk, identity, parking
from engine.projections.account_leads import TableLeads
from engine.projections.fold import ROUTING_STATE_EVENTS, Batch, Folder, Row
from engine.projections.layout import (
    DESCRIPTIONS,
    KEYED_TABLES,
    LEGACY_NAME,
    PROJECTIONS,
    RETRACTED,
    RULES_TABLE,
    TABLE_PROJECTION,
    TABLES,
    UPSERTED,
    names,
)
from engine.projections.parking import ROW_ERRORS, Park
from engine.projections.registry import ACCOUNT_TABLES
from engine.services.application import LeadEngine
from engine.services.cache import CACHE_FACTS, Budgeted

__all__ = [
    "DESCRIPTIONS",
    "KEYED_TABLES",
    "LEGACY_NAME",
    "PROJECTIONS",
    "RETRACTED",
    "ROUTING_STATE_EVENTS",
    "RULES_TABLE",
    "TABLES",
    "TABLE_PROJECTION",
    "UPSERTED",
    "Batch",
    "PositionMoved",
    "Projector",
    "Unparked",
    "names",
]

log = get_logger("engine.projector")
#: A bulk load makes its leads' rows this many leads at a time (peak memory: their rows)
LEAD_ROWS_CHUNK = 10_000
#: A bulk load reads the aggregates of about this many notifications (of its part) at a time,
#: by range of id, and frees them before the next range: its memory is one range's aggregates
CHUNK_EVENTS = 100_000


def id_ranges(count: int) -> list[tuple[UUID | None, UUID | None]]:
    """`count` consecutive ranges [lo, hi) of UUIDs covering them all (None: no bound), split
    evenly on their value (the ids are keyed hashes: evenly spread)."""
    bounds: list[UUID | None] = [UUID(int=(i << 128) // count) for i in range(1, count)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


class PositionMoved(RuntimeError):
    """Another writer (a rebuild's switch, a second projector) moved a projection's position."""


class Unparked(PositionMoved):
    """A retry brought back a lead whose events this batch skipped: project the batch again."""


class Projector:
    """Projects the engine's log into `lead_state`, touchpoints, stage history and costs."""

    def __init__(
        self,
        app: LeadEngine,
        db: Database,
        *,
        only: str | list[str] | tuple[str, ...] | None = None,
        batch_size: int = 10_000,
        cache_size: int = 10_000,  # LEADENGINE_CACHE_SIZE
        cache_facts: int = CACHE_FACTS,  # LEADENGINE_CACHE_FACTS (engine/services/cache.py)
    ) -> None:
        """`db.schema` holds the tables written and their tracking (a rebuild passes its
        staging schema); `only` limits the projections run (default: all)."""
        self.app = app
        self.db = db
        self.names = names(only)
        self.batch_size = batch_size
        self.folder = Folder(app, cache_size, cache_facts)
        self.writers = bulk.Writers(
            db.schema, extra={t: (accounts.COLUMNS[t], accounts.KEYS[t]) for t in ACCOUNT_TABLES}
        )
        self._conn: psycopg.Connection[Any] | None = None
        self._borrowed = False
        self._tracking = sql.Identifier(db.schema, "projection_tracking")
        #: whether this projector has recorded its rules in `rules_applied` (None: no such
        #: table in its schema, e.g. a rebuild's staging schema)
        self._rules_noted: bool | None = False
        #: the account tables' inputs and settled rows (None: load from the tables first)
        self._book: accounts.AccountBook | None = None

    @property
    def cache_size(self) -> int:
        return self.folder.cache_size

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self.folder.cache_size = size

    @property
    def _cache(self) -> Budgeted:
        """The aggregates kept between batches (bounded by `cache_size`)."""
        return self.folder.cache

    def positions(self) -> dict[str, int]:
        """Each of this projector's projections' position in the log (0: nothing yet)."""
        query = sql.SQL("SELECT name, position FROM {} WHERE name = ANY(%s)").format(self._tracking)
        if self._borrowed and self._conn is not None:  # inside the caller's transaction
            found = dict(self._conn.execute(query, (list(self.names),)).fetchall())
        else:
            with self.db.connect() as conn:
                found = dict(conn.execute(query, (list(self.names),)).fetchall())
        return {name: int(found.get(name, 0)) for name in self.names}

    def position(self) -> int:
        """The position all of this projector's projections have reached (the lowest)."""
        return min(self.positions().values())

    def lag(self) -> int:
        head = self.app.recorder.max_notification_id() or 0
        return max(0, head - self.position())

    # -- the live path ---------------------------------------------------------------------

    def run(
        self,
        *,
        until_caught_up: bool = True,
        progress: Callable[[int, int], None] | None = None,
        stop: Callable[[], bool] | None = None,
        idle_sleep: float = 0.5,
    ) -> int:
        """Project batches until caught up (or, if not `until_caught_up`, until `stop()`).

        If another writer moves a position meanwhile (a rebuild switched a projection to its
        new tables), the batch is rolled back and the run resumes from the new positions."""
        done = 0
        positions = self.positions()
        while not (stop and stop()):
            try:
                count, positions = self.run_batch(positions)
            except PositionMoved as moved:
                log.info("projection position moved; resuming from it", reason=str(moved))
                positions = self.positions()
                continue
            done += count
            if progress:
                progress(done, min(positions.values()))
            if count == 0:
                if until_caught_up:
                    break
                time.sleep(idle_sleep)
        return done

    def run_batch(self, positions: dict[str, int]) -> tuple[int, dict[str, int]]:
        """Project the next batch past the lowest position; the new positions."""
        start = min(positions.values())
        notifications = self.app.recorder.select_notifications(
            start=start + 1, limit=self.batch_size
        )
        if not notifications:
            return 0, positions
        started = time.perf_counter()
        self._load_parked()
        batch = Batch()
        self.app.sealed_mapper.prefetch_keys(notifications)  # the leads' keys: one round trip
        folder = self.folder
        everything = frozenset(positions)  # past every position: the common case, no set made
        behind, ahead = max(positions.values()), 0
        for notification in notifications:
            if notification.id > behind:
                want, ahead = everything, ahead + 1
            else:
                want = folder.wanted(positions, notification.id, batch)
            folder.take(notification, notification.id, batch, want)
        for name in everything:
            batch.events[name] = batch.events.get(name, 0) + ahead
        batch.last_position = notifications[-1].id
        folder.links.ensure(self.app, batch.last_position, folded_from=start + 1)
        new = self._write(batch, positions, started)
        metrics.projector_batch_seconds.observe(time.perf_counter() - started)
        metrics.projector_events.inc(len(notifications))
        metrics.projection_position.set(min(new.values()))
        self._parked_metric()
        return len(notifications), new

    def parked(self) -> dict[str, int]:
        """How many aggregates each of this projector's projections has parked."""
        self._load_parked()
        self._parked_metric()
        return {name: len(self.folder.parked[name]) for name in self.names}

    def _load_parked(self) -> None:
        """Read the parked aggregates (a retry elsewhere may have brought some back)."""
        try:
            found = parking.load(self._connection(), self.db.schema, self.names)
        except psycopg.OperationalError:
            self.close()  # the next batch reconnects
            raise
        self.folder.set_parked(found)

    def _parked_metric(self) -> None:
        for name in self.names:
            metrics.parked_leads.labels(projection=name).set(len(self.folder.parked[name]))

    def _failed_row(
        self, exc: Exception, projections: set[str], owner: UUID, position: int, table: str
    ) -> None:
        self.folder.failed(exc, projections, owner, position, None, table)

    def _write(self, batch: Batch, positions: dict[str, int], started: float) -> dict[str, int]:
        """Commit the batch's rows, parks and new positions in one transaction: one COPY and
        one merge per table. If the database rejects a row, write again, each aggregate's rows
        in a savepoint: park the offenders."""
        folder, writers = self.folder, self.writers
        leads = folder.lead_rows(list(batch.leads.values()), batch.first_seen, batch.last_position)
        values = {**batch.event_rows(), **leads}
        moving = {n: at for n, at in positions.items() if batch.last_position > at}
        signals = folder.signals if "leads" in moving else []
        states = [accounts.state_row(a) for a in batch.accounts.values()]
        conn = self._connection()
        seconds = time.perf_counter() - started

        noted = False

        def commit(write_rows: Callable[[Cursor[Any]], None]) -> None:
            nonlocal noted
            with conn.transaction(), conn.cursor() as cur:
                for name, expected in moving.items():
                    events = batch.events.get(name, 0)
                    self._advance(cur, name, expected, batch.last_position, events, seconds)
                self._still_parked(cur, batch.skipped)
                if "leads" in moving and self._rules_noted is False:
                    noted = self._note_rules(cur, moving["leads"] + 1)
                write_rows(cur)
                if values[identity.TABLE]:  # a new link, merge or unmerge: its people again
                    ends = identity.touched_by(values[identity.TABLE])
                    identity.refresh(cur, self.db.schema, ends)
                if signals or states:
                    self._write_accounts(cur, states, signals)
                writers.rekeys(cur, batch.rekeys)
                writers.retractions(cur, batch.retracted)
                parking.record(cur, self.db.schema, folder.parks)

        def merges(cur: Cursor[Any]) -> None:
            for table in TABLES:
                writers.merge(cur, table, values[table])

        def one_by_one(cur: Cursor[Any]) -> None:
            bulk.isolated(
                cur, values, batch.owner, batch.first_seen, writers.upsert, self._failed_row
            )

        try:
            try:
                commit(merges)
            except ROW_ERRORS:
                self._book = None  # what it settled did not commit: read the tables again
                commit(one_by_one)  # the slow path: each aggregate's rows in a savepoint
        except psycopg.OperationalError:
            self._book = None
            self.close()
            raise
        except BaseException:
            self._book = None
            raise
        if noted:  # committed with the batch
            self._rules_noted = True
        folder.parks = []
        return {n: (batch.last_position if n in moving else at) for n, at in positions.items()}

    def _write_accounts(self, cur: Cursor[Any], states: list[Row], signals: list[Row]) -> None:
        """The batch's account_state and account_signals rows, then whatever settling all
        accounts again changed in account_members and account_scores (in the batch's
        transaction; the book reads each lead's rows from the tables and writes the signals and
        member rows there itself). The decisions the settling takes (MQAs, matches) are
        recorded on the accounts first, in the event store's own transaction
        (`record_account_decisions`)."""
        merge = self.writers.merge

        def write(table: str, rows: list[Row]) -> None:
            merge(cur, table, accounts.for_database(table, rows))

        if self._book is None:
            self._book = accounts.AccountBook()
            self._book.load(cur, self.db.schema)
        book = self._book
        book.leads = TableLeads(cur, self.db.schema, write)
        for row in states:
            book.put_state(row)
        for row in signals:
            book.put_signals(row)
        # the account decisions' own events change only an account's version (the book holds
        # their decisions already): the book settles nothing for them
        book.settle(self.app.rules, decide=True, sink=write)
        stored = self.app.record_account_decisions(book.mqa_decisions, book.member_decisions)
        mqa_states, mqa_scores = book.recorded(stored)  # account_state.mqa before its event
        write("account_state", states + mqa_states)  # a key twice: the last row wins
        write("account_scores", mqa_scores)  # after the settled rows: these win

    def settle_accounts(self, cur: Cursor[Any] | None = None) -> None:
        """Fill the (empty) account_members and account_scores tables from the account_state
        and account_signals rows the bulk load wrote (all parts of it), streaming the leads
        (AccountBook: memory per account, not per lead)."""
        if cur is None:
            with self._connection().transaction(), self._connection().cursor() as own:
                self.settle_accounts(own)
            return
        schema = self.db.schema

        def copy(table: str, rows: list[Row]) -> None:
            accounts.copy(cur, schema, table, rows)

        book = accounts.AccountBook()
        book.load(cur, schema)
        book.leads = TableLeads(cur, schema, copy)
        book.settle(self.app.rules, sink=copy)
        self._book = book

    def _note_rules(self, cur: Cursor[Any], position: int) -> bool:
        """Record the rules this projector applies, from `position`, unless they are the
        ones recorded last (`rules_in_force`): in the batch's transaction, once per run.
        False if the schema has no table for them (a rebuild's staging schema)."""
        found = cur.execute(
            "SELECT to_regclass(%s)", (qualified(self.db.schema, RULES_TABLE),)
        ).fetchone()
        if not (found and found[0]):
            self._rules_noted = None
            return False
        document = self.app.rules.model_dump(mode="json")
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} (rules_version, rules_hash, rules, from_position) "
                "SELECT %s, %s, %s::jsonb, %s WHERE (SELECT rules_hash FROM {t} "
                "ORDER BY applied_from DESC, from_position DESC LIMIT 1) IS DISTINCT FROM %s"
            ).format(t=sql.Identifier(self.db.schema, RULES_TABLE)),
            (self.app.rules.ref, digest, text, position, digest),
        )
        return True

    def _still_parked(self, cur: Cursor[Any], skipped: set[tuple[str, UUID]]) -> None:
        """Raise Unparked if a lead whose events the batch skipped is parked no more (a retry
        committed while the batch was folded; it held the positions, so this runs after it)."""
        skipped = skipped - {(p.projection, p.originator_id) for p in self.folder.parks}
        if not skipped:  # (those parked by this very batch are not in the table yet)
            return
        found = cur.execute(
            sql.SQL(
                "SELECT projection, originator_id FROM {} WHERE originator_id = ANY(%s)"
            ).format(sql.Identifier(self.db.schema, "parked")),
            (list({originator for _name, originator in skipped}),),
        ).fetchall()
        if not skipped <= set(found):
            raise Unparked("a retry brought back a lead this batch skipped; projecting it again")

    def reproject(self, streams: dict[UUID, set[str]], positions: dict[str, int]) -> list[Park]:
        """Re-fold parked aggregates from their whole streams and write their rows, each in a
        savepoint of its own: `streams` maps each aggregate to the projections it is parked in,
        each projected up to its position in `positions`. Runs in the caller's transaction
        (`use_connection`); returns the parks of the aggregates that failed again."""
        folder = self.folder
        folder.forget_parked()
        schema, table = self.log_table()
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s AND notification_id <= %s ORDER BY originator_version"
        ).format(sql.Identifier(schema, table))
        batch = Batch()
        conn = self._connection()
        for originator, wanted in streams.items():
            folder.cache.pop(originator, None)  # folded from its first event, under today's code
            until = max(positions[name] for name in wanted)
            for position, agg_id, version, topic, state in conn.execute(
                query, (originator, until)
            ).fetchall():
                want = frozenset(n for n in wanted if position <= positions[n])
                folder.take(StoredEvent(agg_id, version, topic, state), position, batch, want)
        batch.retracted += [  # re-folded rows may be in the table already, unstamped
            (row[RETRACTED], row[0], row[1]) for row in batch.stages if row[RETRACTED]
        ]
        upto = positions.get("leads", max(positions.values()))
        folder.links.ensure(self.app, upto)
        values = {
            **batch.event_rows(),
            **folder.lead_rows(list(batch.leads.values()), batch.first_seen, upto),
        }
        with conn.transaction(), conn.cursor() as cur:
            bulk.isolated(
                cur, values, batch.owner, batch.first_seen, self.writers.upsert, self._failed_row
            )
            self.writers.retractions(cur, batch.retracted)
        return folder.take_parks()

    def log_table(self) -> tuple[str, str]:
        """(schema, table) of the application's stored events (the notification log)."""
        recorder = self.app.recorder
        return recorder.datastore.schema, recorder.events_table_name  # type: ignore[attr-defined]

    # -- the bulk path (a rebuild's load) ----------------------------------------------------

    def bulk_load(
        self,
        *,
        until: int,
        progress: Callable[[int, int], None] | None = None,
        log_table: tuple[str, str] | None = None,
        part: tuple[int, int] = (0, 1),
        track: bool = True,
        chunk_events: int = CHUNK_EVENTS,
    ) -> int:
        """Fill this projector's (empty) tables from the start of the log up to `until`.

        Reads the log straight from its table (`log_table`, default the app's) through one
        server-side binary cursor. The aggregates are loaded a range of ids at a time (about
        `chunk_events` notifications of this part each, in log order within the range): every
        aggregate of the range stays in memory (no cache misses, no repository reads); touch,
        milestone, history and cost rows are streamed with COPY page by page, and when the
        range is read each of its leads' final lead_state / score / SLA / account rows is
        written once and every aggregate of the range is freed, so the memory held is one
        range's aggregates, not the whole log's (an aggregate's events are all in one range,
        as they are all in one part; the folds are per aggregate, so reading range by range
        gives the rows reading the whole log in one go gives). One transaction: an interrupted
        load leaves nothing behind.

        `part=(k, n)` loads only the aggregates whose id falls in part k of n (every event of
        an aggregate lands in the same part), so n processes can load side by side; with
        `track=False` the caller records the position once all parts are in. Returns the
        number of notifications read."""
        assert self.position() == 0, "bulk_load needs empty tables"
        self.folder.unbounded()
        want = frozenset(self.names)
        done = 0
        self._load_parked()
        schema, table = log_table or self.log_table()
        k, n = part
        ranges = id_ranges(max(1, -(-until // (n * max(1, chunk_events)))))
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            for lo, hi in ranges:
                done = self._load_range(cur, (schema, table), until, (k, n), (lo, hi), want,
                                        done, progress)  # fmt: skip
            if "history" in want:
                identity.refresh(
                    cur, self.db.schema
                )  # this part's links (a rebuild: all, at the switch)
            if "leads" in want and n == 1:  # all of the log here: settle now (parts: later)
                self.settle_accounts(cur)
            if track:
                self._start_at(cur, until, done)
        return done

    def _load_range(
        self,
        cur: Cursor[Any],
        log_table: tuple[str, str],
        until: int,
        part: tuple[int, int],
        ids: tuple[UUID | None, UUID | None],
        want: frozenset[str],
        done: int,
        progress: Callable[[int, int], None] | None,
    ) -> int:
        """`bulk_load` of the aggregates of part `part` whose id is in [lo, hi) (None: open):
        fold them in log order, stream their event rows, then write their final rows and free
        them. Returns `done` plus the notifications read."""
        folder, writers = self.folder, self.writers
        leads: dict[UUID, Lead] = {}
        accounts_seen: dict[UUID, Account] = {}
        seen: dict[UUID, int] = {}  # each aggregate's first notification (for its park)
        (k, n), (lo, hi) = part, ids
        where = ["notification_id <= %s"]
        params: list[Any] = [until]
        if n > 1:
            where.append("get_byte(uuid_send(originator_id), 15) %% %s = %s")
            params += [n, k]
        if lo is not None:
            where.append("originator_id >= %s")
            params.append(lo)
        if hi is not None:
            where.append("originator_id < %s")
            params.append(hi)
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE " + " AND ".join(where) + " ORDER BY notification_id"
        ).format(sql.Identifier(*log_table))
        with (
            self.db.connect(autocommit=False) as reader,
            reader.cursor(name="leadengine_bulk_load", binary=True) as log_cursor,
        ):
            log_cursor.itersize = self.batch_size
            if lo is not None or hi is not None:
                # a cursor is planned for its first rows: here that would scan the whole log
                # in notification order for every range; planned for all, it reads the range
                # through the primary key and sorts it
                reader.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            log_cursor.execute(query, params)
            while True:
                started = time.perf_counter()
                page = log_cursor.fetchmany(self.batch_size)
                if not page:
                    break
                batch = Batch()
                stored = [(p, StoredEvent(o, v, t, s)) for p, o, v, t, s in page]
                self.app.sealed_mapper.prefetch_keys(e for _, e in stored)
                for position, event in stored:
                    folder.take(event, position, batch, want)
                leads.update(batch.leads)
                accounts_seen.update(batch.accounts)
                for agg_id, position in batch.first_seen.items():
                    seen.setdefault(agg_id, position)
                bulk.all_or_isolated(
                    cur, batch.event_rows(), batch.owner, seen, writers.copy, self._failed_row
                )
                writers.rekeys(cur, batch.rekeys)
                writers.retractions(cur, batch.retracted)
                parking.record(cur, self.db.schema, folder.take_parks())
                done += len(page)
                metrics.projector_batch_seconds.observe(time.perf_counter() - started)
                metrics.projector_events.inc(len(page))
                if progress:
                    progress(done, page[-1][0])
        if "leads" in want:
            signals: list[Row] = []
            lead_rows: dict[str, list[Row]] = {}
            lead_ids = list(leads)
            folder.links.ensure(self.app, until)  # every part's decisions: the people
            for i in range(0, len(lead_ids), LEAD_ROWS_CHUNK):  # a chunk's rows at a time
                chunk = [leads.pop(lead_id) for lead_id in lead_ids[i : i + LEAD_ROWS_CHUNK]]
                lead_rows = folder.lead_rows(chunk, seen, until, others=False)
                signals += folder.signals
                bulk.all_or_isolated(
                    cur, lead_rows, Batch().owner, seen, writers.copy, self._failed_row
                )
                parking.record(cur, self.db.schema, folder.take_parks())
            states = [accounts.state_row(a) for a in accounts_seen.values()]
            accounts.copy(cur, self.db.schema, "account_state", states)
            accounts.copy(cur, self.db.schema, "account_signals", signals)
            del lead_rows, signals, states
            folder.signals = []
        # every aggregate of the range is written: free them before the next range
        leads.clear()
        accounts_seen.clear()
        folder.cache.clear()
        return done

    def record_position(self, position: int, events: int) -> None:
        """Set every projection of this projector at `position` (after a parallel bulk load)."""
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            self._start_at(cur, position, events)

    def _start_at(self, cur: Cursor[Any], position: int, events: int) -> None:
        for name in self.names:
            self._advance(cur, name, 0, position, events, 0.0)

    # -- the connection and the tracking rows -------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()
            self._borrowed = False
            # this projection's staging tables, for the life of the connection
            tables = [t for name in self.names for t in PROJECTIONS[name]]
            self.writers.prepare(self._conn, tables)
        return self._conn

    def use_connection(self, conn: psycopg.Connection[Any]) -> None:
        """Write through `conn` (each batch a savepoint inside the caller's transaction): a
        rebuild's last catch-up runs in the same transaction as its switch."""
        self.close()
        self._conn, self._borrowed = conn, True

    def close(self) -> None:
        if self._conn is not None and not self._borrowed:
            self._conn.close()
        self._conn, self._borrowed = None, False
        self.writers.prepared = frozenset()  # a borrowed connection makes them as it goes

    def _advance(
        self,
        cur: Cursor[Any],
        name: str,
        expected: int,
        new: int,
        events: int,
        seconds: float,
    ) -> None:
        """Move `name` from `expected` to `new`, or raise PositionMoved if another writer did."""
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} AS t (name, position, batch_events, batch_seconds) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "position = EXCLUDED.position, batch_events = EXCLUDED.batch_events, "
                "batch_seconds = EXCLUDED.batch_seconds, updated_at = now() "
                "WHERE t.position = %s RETURNING position"
            ).format(t=self._tracking),
            (name, new, events, seconds, expected),
        )
        if cur.fetchone() is None:
            raise PositionMoved(
                f"projection {name!r} moved past {expected} under us (a rebuild switched it, "
                "or another projector runs)"
            )
