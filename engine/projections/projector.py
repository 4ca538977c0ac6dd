"""The read-model projector: follows the notification log in batches.

Each batch (many notifications) is decoded, folded onto the leads it touches, and written with
the new log position in one transaction: rows and tracking commit together, so a crash at any
point resumes exactly where the last commit left off, and re-running changes nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import Cursor, sql

from engine import metrics
from engine.aggregates.campaign import Campaign
from engine.aggregates.lead import Lead
from engine.aggregates.routing import Roster, RoutingQueue
from engine.application import LeadEngine
from engine.db import Database
from engine.projections import rows

NAME = "read_model"
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


@dataclass
class Batch:
    """What one batch of notifications adds to the read model."""

    last_position: int = 0
    leads: dict[UUID, Lead] | None = None
    touches: list[tuple[Any, ...]] | None = None
    stages: list[tuple[Any, ...]] | None = None
    costs: list[tuple[Any, ...]] | None = None
    routings: list[tuple[Any, ...]] | None = None
    milestones: list[tuple[Any, ...]] | None = None

    def __post_init__(self) -> None:
        self.leads, self.touches, self.stages, self.costs = {}, [], [], []
        self.routings, self.milestones = [], []


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
        self, app: LeadEngine, db: Database, *, batch_size: int = 2000, cache_size: int = 20_000
    ) -> None:
        self.app = app
        self.db = db
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[UUID, Any] = OrderedDict()
        self._conn: psycopg.Connection[Any] | None = None
        s = db.schema
        self._sql_lead = _upsert(s, "lead_state", rows.LEAD_STATE_COLUMNS, ("lead_id",))
        self._sql_touch = _upsert(
            s, "lead_touchpoints", rows.TOUCH_COLUMNS, ("lead_id", "event_id")
        )
        self._sql_stage = _upsert(
            s, "lead_stage_history", rows.STAGE_HISTORY_COLUMNS, ("lead_id", "version")
        )
        self._sql_cost = _upsert(s, "campaign_costs", rows.COST_COLUMNS, ("event_id",))
        self._sql_score = _upsert(s, "lead_scores", rows.SCORE_COLUMNS, ("lead_id", "model"))
        self._sql_routing = _upsert(s, "lead_routing", rows.ROUTING_COLUMNS, ("lead_id", "version"))
        self._sql_sla = _upsert(s, "lead_sla", rows.SLA_COLUMNS, ("lead_id",))
        self._sql_milestone = _upsert(
            s, "lead_milestones", rows.MILESTONE_COLUMNS, ("lead_id", "event_id")
        )
        self._tracking = sql.Identifier(s, "projection_tracking")

    def position(self) -> int:
        with self.db.connect() as conn:
            row = conn.execute(
                sql.SQL("SELECT position FROM {} WHERE name = %s").format(self._tracking), (NAME,)
            ).fetchone()
        return int(row[0]) if row else 0

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
        """Project batches until caught up (or, if not `until_caught_up`, until `stop()`)."""
        done = 0
        position = self.position()
        while not (stop and stop()):
            count, position = self.run_batch(position)
            done += count
            if progress:
                progress(done, position)
            if count == 0:
                if until_caught_up:
                    break
                time.sleep(idle_sleep)
        return done

    def run_batch(self, position: int) -> tuple[int, int]:
        notifications = self.app.recorder.select_notifications(
            start=position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0, position
        started = time.perf_counter()
        batch = Batch()
        for notification in notifications:
            event = self.app.sealed_mapper.to_domain_event(notification)
            self._fold(event, notification.id, batch)
            batch.last_position = notification.id
        self._write(batch, expected=position)
        metrics.projector_batch_seconds.observe(time.perf_counter() - started)
        metrics.projector_events.inc(len(notifications))
        metrics.projection_position.set(batch.last_position)
        return len(notifications), batch.last_position

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

    def _fold(self, event: Any, position: int, batch: Batch) -> None:
        if isinstance(event, ROUTING_STATE_EVENTS):
            return  # queues and the roster: their effects show on the leads; never rebuilt here
        agg = self._aggregate(event)
        assert batch.leads is not None and batch.touches is not None
        assert batch.stages is not None and batch.costs is not None
        if isinstance(agg, Campaign):
            if isinstance(event, Campaign.CostRecorded):
                batch.costs.append(rows.cost_row(agg, event))
            return
        lead = agg
        batch.leads[lead.id] = lead
        if isinstance(event, Lead.FactRecorded) and event.event_type.startswith("touch."):
            batch.touches.append(rows.touch_row(lead, event, position))
        elif isinstance(event, Lead.FactRecorded) and event.event_type in rows.MILESTONE_TYPES:
            assert batch.milestones is not None
            batch.milestones.append(rows.milestone_row(lead, event, position))
        elif isinstance(event, (Lead.StageChanged, Lead.MarketingQualified)):
            batch.stages.append(rows.stage_row(lead, event))
        elif isinstance(event, (Lead.Routed, Lead.RoutingFailed)):
            assert batch.routings is not None
            batch.routings.append(rows.routing_row(lead, event))

    def _write(self, batch: Batch, *, expected: int) -> None:
        assert batch.leads is not None
        # A batch may end between a lead's creation and its first fact; the next batch has it.
        rules = self.app.rules
        leads = [lead for lead in batch.leads.values() if lead.facts]
        lead_rows = [rows.lead_state_row(lead, rules) for lead in leads]
        score_rows = [row for lead in leads for row in rows.score_rows(lead, rules)]
        sla_rows = []
        if rules.sla is not None:
            for lead in leads:
                row = rows.sla_row(lead, rules.sla)
                if row is not None:
                    sla_rows.append(row)
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cur:
                self._advance(cur, expected, batch.last_position)
                for statement, values in (
                    (self._sql_lead, lead_rows),
                    (self._sql_touch, batch.touches),
                    (self._sql_stage, batch.stages),
                    (self._sql_cost, batch.costs),
                    (self._sql_score, score_rows),
                    (self._sql_routing, batch.routings or []),
                    (self._sql_sla, sla_rows),
                    (self._sql_milestone, batch.milestones or []),
                ):
                    if values:
                        cur.executemany(statement, values)
        except psycopg.OperationalError:
            self.close()
            raise

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self.db.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _advance(self, cur: Cursor[Any], expected: int, new: int) -> None:
        """Move the tracking row from `expected` to `new`, or fail if another writer moved it."""
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} AS t (name, position) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now() "
                "WHERE t.position = %s RETURNING position"
            ).format(t=self._tracking),
            (NAME, new, expected),
        )
        if cur.fetchone() is None:
            raise RuntimeError(
                f"projection {NAME!r} moved past {expected} under us; another projector runs"
            )
