"""The read-model projector: follows the notification log in batches.

The read model is four named projections (`PROJECTIONS`), each a group of tables with its own
position in `projection_tracking`. One pass over the log serves all those asked for (`only`):
each batch (many notifications) is decoded once, folded onto the leads it touches, and written
with every projection's new position in one transaction: rows and tracking commit together, so
a crash at any point resumes exactly where the last commit left off, and re-running changes
nothing. A projection that is behind the others (just rebuilt, or run alone with `--only`) gets
only the events past its own position.

`bulk_load` is the rebuild path (engine/projections/rebuild.py): empty tables, the whole log,
every aggregate kept in memory, rows streamed with COPY and each lead's final rows written once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import Cursor, sql

from engine import metrics
from engine.aggregates.campaign import Campaign
from engine.aggregates.lead import Lead
from engine.aggregates.routing import Roster, RoutingQueue
from engine.application import LeadEngine
from engine.db import Database
from engine.logs import get_logger
from engine.projections import rows

#: The projections and the tables each one owns (a rebuild replaces all of a projection's).
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "leads": ("lead_state", "lead_scores", "lead_sla"),
    "touchpoints": ("lead_touchpoints", "lead_milestones"),
    "history": ("lead_stage_history", "lead_routing"),
    "costs": ("campaign_costs",),
}
DESCRIPTIONS = {
    "leads": "each lead's current stage, owner, score per model and SLA timers",
    "touchpoints": "every touch and sales milestone, as it happened",
    "history": "stage changes with their reasons, routing rounds",
    "costs": "campaign costs",
}
#: The name the whole read model was tracked under before it was split (migration 3).
LEGACY_NAME = "read_model"


class PositionMoved(RuntimeError):
    """Another writer (a rebuild's switch, a second projector) moved a projection's position."""


def names(only: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validate projection names (comma-separated or a list); all of them if none given."""
    if not only:
        return tuple(PROJECTIONS)
    wanted = [n.strip() for n in (only.split(",") if isinstance(only, str) else only)]
    unknown = [n for n in wanted if n not in PROJECTIONS]
    if unknown:
        raise ValueError(
            f"unknown projection {', '.join(map(repr, unknown))}: expected one of "
            + ", ".join(PROJECTIONS)
        )
    return tuple(n for n in PROJECTIONS if n in wanted)


log = get_logger("engine.projector")

#: Events of the shared routing aggregates (long streams the read model does not need).
ROUTING_STATE_EVENTS = (
    RoutingQueue.Started,
    RoutingQueue.Assigned,
    RoutingQueue.Released,
    Roster.Started,
    Roster.AvailabilityChanged,
)
#: Tables whose rows are opinions that change (replaced on conflict); the rest are history.
UPSERTED = frozenset({"lead_state", "lead_scores", "lead_sla"})
#: Every table the projector writes, in write order: its columns and its key.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lead_state": (rows.LEAD_STATE_COLUMNS, ("lead_id",)),
    "lead_touchpoints": (rows.TOUCH_COLUMNS, ("lead_id", "source", "event_id")),
    "lead_stage_history": (rows.STAGE_HISTORY_COLUMNS, ("lead_id", "version")),
    "campaign_costs": (rows.COST_COLUMNS, ("campaign", "source", "event_id")),
    "lead_scores": (rows.SCORE_COLUMNS, ("lead_id", "model")),
    "lead_routing": (rows.ROUTING_COLUMNS, ("lead_id", "version")),
    "lead_sla": (rows.SLA_COLUMNS, ("lead_id",)),
    "lead_milestones": (rows.MILESTONE_COLUMNS, ("lead_id", "source", "event_id")),
}


@dataclass
class Batch:
    """What one batch of notifications adds to the read model."""

    last_position: int = 0
    events: dict[str, int] | None = None  # notifications past each projection's position
    leads: dict[UUID, Lead] | None = None
    touches: list[tuple[Any, ...]] | None = None
    stages: list[tuple[Any, ...]] | None = None
    costs: list[tuple[Any, ...]] | None = None
    routings: list[tuple[Any, ...]] | None = None
    milestones: list[tuple[Any, ...]] | None = None
    #: (pseudonym, lead id) by table, for the leads forgotten in this batch
    rekeys: dict[str, list[tuple[str, UUID]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = {}
        self.leads, self.touches, self.stages, self.costs = {}, [], [], []
        self.routings, self.milestones = [], []

    def event_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """The history rows this batch adds (one per event), by table."""
        return {
            "lead_touchpoints": self.touches or [],
            "lead_milestones": self.milestones or [],
            "lead_stage_history": self.stages or [],
            "lead_routing": self.routings or [],
            "campaign_costs": self.costs or [],
        }


#: The tables that show the lead key: a forgotten lead's rows there get its pseudonym.
KEYED_TABLES = tuple(t for t, (columns, _) in TABLES.items() if "lead_key" in columns)


def _rekey(schema: str, table: str) -> sql.Composed:
    return sql.SQL("UPDATE {} SET lead_key = %s WHERE lead_id = %s").format(
        sql.Identifier(schema, table)
    )


def _upsert(
    schema: str, table: str, columns: tuple[str, ...], key: tuple[str, ...]
) -> sql.Composed:
    updates = [c for c in columns if c not in key]
    action = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates
            )
        )
        if updates and table in UPSERTED
        else sql.SQL("DO NOTHING")
    )
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        action,
    )


class Projector:
    """Projects the engine's log into `lead_state`, touchpoints, stage history and costs."""

    def __init__(
        self,
        app: LeadEngine,
        db: Database,
        *,
        only: str | list[str] | tuple[str, ...] | None = None,
        batch_size: int = 2000,
        cache_size: int = 20_000,
    ) -> None:
        """`db.schema` holds the tables written and their tracking (a rebuild passes its
        staging schema); `only` limits the projections run (default: all)."""
        self.app = app
        self.db = db
        self.names = names(only)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Any] = OrderedDict()
        self._conn: psycopg.Connection[Any] | None = None
        self._borrowed = False
        s = db.schema
        self._upserts = {t: _upsert(s, t, cols, key) for t, (cols, key) in TABLES.items()}
        self._rekeys = {t: _rekey(s, t) for t in KEYED_TABLES}
        self._tracking = sql.Identifier(s, "projection_tracking")

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
        batch = Batch()
        self.app.sealed_mapper.prefetch_keys(notifications)  # the leads' keys: one round trip
        for notification in notifications:
            event = self.app.sealed_mapper.to_domain_event(notification)
            want = self._wanted(positions, notification.id, batch)
            self._fold(event, notification.id, batch, want)
            batch.last_position = notification.id
        new = self._write(batch, positions, started)
        metrics.projector_batch_seconds.observe(time.perf_counter() - started)
        metrics.projector_events.inc(len(notifications))
        metrics.projection_position.set(min(new.values()))
        return len(notifications), new

    def _wanted(self, positions: dict[str, int], position: int, batch: Batch) -> frozenset[str]:
        assert batch.events is not None
        want = frozenset(n for n, at in positions.items() if position > at)
        for name in want:
            batch.events[name] = batch.events.get(name, 0) + 1
        return want

    def _aggregate(self, event: Any) -> Any:
        agg_id = event.originator_id
        agg = self._cache.get(agg_id)
        if agg is not None and agg.version == event.originator_version - 1:
            agg = event.mutate(agg)
        elif event.originator_version == 1:
            agg = event.mutate(None)
        else:
            agg = self.app.repository.get(agg_id, version=event.originator_version)
        self._cache[agg_id] = agg
        self._cache.move_to_end(agg_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return agg

    def _fold(
        self, event: Any, position: int, batch: Batch, want: frozenset[str] = frozenset(PROJECTIONS)
    ) -> None:
        if isinstance(event, ROUTING_STATE_EVENTS):
            return  # queues and the roster: their effects show on the leads; never rebuilt here
        agg = self._aggregate(event)  # every event folds, wanted or not: aggregates stay whole
        if not want:
            return
        assert batch.leads is not None and batch.touches is not None
        assert batch.stages is not None and batch.costs is not None
        if isinstance(agg, Campaign):
            if isinstance(event, Campaign.CostRecorded) and "costs" in want:
                batch.costs.append(rows.cost_row(agg, event))
            return
        lead = agg
        if "leads" in want:
            batch.leads[lead.id] = lead
        if isinstance(event, Lead.Erased):  # every row that showed the key gets the pseudonym
            for name in want:
                for table in PROJECTIONS[name]:
                    if table in KEYED_TABLES:
                        batch.rekeys.setdefault(table, []).append((lead.key, lead.id))
        if isinstance(event, Lead.FactRecorded) and event.event_type.startswith("touch."):
            if "touchpoints" in want:
                batch.touches.append(rows.touch_row(lead, event, position))
        elif isinstance(event, Lead.FactRecorded) and event.event_type in rows.MILESTONE_TYPES:
            if "touchpoints" in want:
                assert batch.milestones is not None
                batch.milestones.append(rows.milestone_row(lead, event, position))
        elif isinstance(event, (Lead.StageChanged, Lead.MarketingQualified)):
            if "history" in want:
                batch.stages.append(rows.stage_row(lead, event))
        elif isinstance(event, (Lead.Routed, Lead.RoutingFailed)) and "history" in want:
            assert batch.routings is not None
            batch.routings.append(rows.routing_row(lead, event))

    def _lead_rows(self, leads: list[Lead]) -> dict[str, list[tuple[Any, ...]]]:
        """The leads' current rows (state, a score per model, SLA), by table."""
        rules = self.app.rules
        # A batch may end between a lead's creation and its first fact; the next batch has it.
        leads = [lead for lead in leads if lead.facts]
        lead_rows, score_rows = [], []
        for lead in leads:
            primary = lead.current_score(rules)  # scored once for lead_state and lead_scores
            lead_rows.append(rows.lead_state_row(lead, rules, primary))
            score_rows.extend(rows.score_rows(lead, rules, primary))
        sla_rows = []
        if rules.sla is not None:
            for lead in leads:
                row = rows.sla_row(lead, rules.sla)
                if row is not None:
                    sla_rows.append(row)
        return {"lead_state": lead_rows, "lead_scores": score_rows, "lead_sla": sla_rows}

    def _write(self, batch: Batch, positions: dict[str, int], started: float) -> dict[str, int]:
        assert batch.leads is not None and batch.events is not None
        values = {**batch.event_rows(), **self._lead_rows(list(batch.leads.values()))}
        moving = {n: at for n, at in positions.items() if batch.last_position > at}
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                seconds = time.perf_counter() - started
                for name, expected in moving.items():
                    self._advance(
                        cur, name, expected, batch.last_position, batch.events.get(name, 0), seconds
                    )
                for table in TABLES:
                    if values[table]:
                        cur.executemany(self._upserts[table], values[table])
                self._write_rekeys(cur, batch)
        except psycopg.OperationalError:
            self.close()
            raise
        return {n: (batch.last_position if n in moving else at) for n, at in positions.items()}

    def _write_rekeys(self, cur: Cursor[Any], batch: Batch) -> None:
        for table, pairs in batch.rekeys.items():
            cur.executemany(self._rekeys[table], pairs)

    def log_table(self) -> tuple[str, str]:
        """(schema, table) of the application's stored events (the notification log)."""
        recorder = self.app.recorder
        return recorder.datastore.schema, recorder.events_table_name  # type: ignore[attr-defined]

    def bulk_load(
        self,
        *,
        until: int,
        progress: Callable[[int, int], None] | None = None,
        log_table: tuple[str, str] | None = None,
        part: tuple[int, int] = (0, 1),
        track: bool = True,
    ) -> int:
        """Fill this projector's (empty) tables from the start of the log up to `until`.

        Reads the log straight from its table (`log_table`, default the app's) through one
        server-side binary cursor. Every aggregate stays in memory (no cache misses, no
        repository reads); touch, milestone, history and cost rows are streamed with COPY page
        by page, and each lead's final lead_state / score / SLA rows are written once at the
        end. One transaction: an interrupted load leaves nothing behind.

        `part=(k, n)` loads only the aggregates whose id falls in part k of n (every event of
        an aggregate lands in the same part), so n processes can load side by side; with
        `track=False` the caller records the position once all parts are in. Returns the
        number of notifications read."""
        assert self.position() == 0, "bulk_load needs empty tables"
        self.cache_size = 1 << 62
        want = frozenset(self.names)
        done = 0
        leads: dict[UUID, Lead] = {}
        decode = self.app.sealed_mapper.to_domain_event
        schema, table = log_table or self.log_table()
        k, n = part
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE notification_id <= %s"
            + (" AND get_byte(uuid_send(originator_id), 15) %% %s = %s" if n > 1 else "")
            + " ORDER BY notification_id"
        ).format(sql.Identifier(schema, table))
        params: tuple[int, ...] = (until, n, k) if n > 1 else (until,)
        conn = self._connection()
        with (
            self.db.connect(autocommit=False) as reader,
            reader.cursor(name="leadengine_bulk_load", binary=True) as log,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            log.itersize = self.batch_size
            log.execute(query, params)
            while True:
                started = time.perf_counter()
                page = log.fetchmany(self.batch_size)
                if not page:
                    break
                batch = Batch()
                stored = [(p, StoredEvent(o, v, t, s)) for p, o, v, t, s in page]
                self.app.sealed_mapper.prefetch_keys(e for _, e in stored)
                for position, event in stored:
                    self._fold(decode(event), position, batch, want)
                assert batch.leads is not None
                leads.update(batch.leads)
                for table, values in batch.event_rows().items():
                    self._copy(cur, table, values)
                self._write_rekeys(cur, batch)
                done += len(page)
                metrics.projector_batch_seconds.observe(time.perf_counter() - started)
                metrics.projector_events.inc(len(page))
                if progress:
                    progress(done, page[-1][0])
            if "leads" in want:
                for table, values in self._lead_rows(list(leads.values())).items():
                    self._copy(cur, table, values)
            if track:
                self._start_at(cur, until, done)
        return done

    def record_position(self, position: int, events: int) -> None:
        """Set every projection of this projector at `position` (after a parallel bulk load)."""
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cur:
            self._start_at(cur, position, events)

    def _start_at(self, cur: Cursor[Any], position: int, events: int) -> None:
        for name in self.names:
            self._advance(cur, name, 0, position, events, 0.0)

    def _copy(self, cur: Cursor[Any], table: str, values: list[tuple[Any, ...]]) -> None:
        if not values:
            return
        columns = TABLES[table][0]
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(self.db.schema, table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with cur.copy(statement) as copy:
            for row in values:
                copy.write_row(row)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()
            self._borrowed = False
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
