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

One bad lead never stops a projection: an aggregate that fails to decode, fold or make its rows,
or whose row the database rejects, is parked for that projection (engine/projections/parking.py)
and the rest of the batch commits. Writes take one statement per table while nothing fails; a
rejected batch is written again with each aggregate's rows in a savepoint of their own, to find
the offenders. `reproject` re-folds parked aggregates (`leadengine projections retry`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import Cursor, sql

from engine import metrics
from engine.aggregates.account import Account
from engine.aggregates.campaign import Campaign
from engine.aggregates.lead import Lead
from engine.aggregates.routing import Roster, RoutingQueue
from engine.logs import get_logger
from engine.postgres.db import Database
from engine.postgres.dependents import qualified
from engine.projections import accounts, identity, parking, registry, rows
from engine.projections.parking import INFRASTRUCTURE, ROW_ERRORS, Park
from engine.services.application import LeadEngine

#: The rules each projector applied, from where in the log (engine/projections/registry.py).
RULES_TABLE = "rules_applied"
#: The projections and the tables each one owns (a rebuild replaces all of a projection's).
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "leads": ("lead_state", "lead_scores", "lead_sla", *registry.ACCOUNT_TABLES),
    "touchpoints": ("lead_touchpoints", "lead_milestones"),
    "history": ("lead_stage_history", "lead_routing", identity.TABLE, identity.PEOPLE_TABLE),
    "costs": ("campaign_costs",),
}
DESCRIPTIONS = {
    "leads": "each lead's current stage, owner, score per model and SLA timers; accounts",
    "touchpoints": "every touch and sales milestone, as it happened",
    "history": "stage changes with their reasons, routing rounds, identity links and merges",
    "costs": "campaign costs",
}
#: The name the whole read model was tracked under before it was split (migration 3).
LEGACY_NAME = "read_model"


class PositionMoved(RuntimeError):
    """Another writer (a rebuild's switch, a second projector) moved a projection's position."""


class Unparked(PositionMoved):
    """A retry brought back a lead whose events this batch skipped: project the batch again."""


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
UPSERTED = frozenset(n for n, t in registry.TABLES.items() if t.upserted and t.projected)
#: Every table the projector writes, in write order: its columns and its key
#: (declared in engine/projections/registry.py).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # identity.PEOPLE_TABLE is made again from all links by `identity.refresh`, never row
    # by row (no batch rows)
    name: (registry.TABLES[name].names, registry.TABLES[name].key)
    for name in registry.PROJECTED
}
#: Where `retracted_at` sits in a stage-history row.
RETRACTED = rows.STAGE_HISTORY_COLUMNS.index("retracted_at")
#: The projection each table belongs to.
TABLE_PROJECTION = {table: name for name, tables in PROJECTIONS.items() for table in tables}
#: Writes a table's rows: an upsert (the projector) or COPY (the bulk load).
Writer = Callable[[Cursor[Any], str, list[tuple[Any, ...]]], None]


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
    links: list[tuple[Any, ...]] = field(default_factory=list)  # identity decisions
    #: (when, lead id, version) of stage-history rows of earlier batches late facts took back
    retracted: list[tuple[datetime, UUID, int]] = field(default_factory=list)
    #: (pseudonym, lead id) by table, for the leads forgotten in this batch
    rekeys: dict[str, list[tuple[str, UUID]]] = field(default_factory=dict)
    cost_owners: list[UUID] | None = None  # the campaign of each row of `costs`
    first_seen: dict[UUID, int] | None = None  # each aggregate's first notification in the batch
    skipped: set[tuple[str, UUID]] | None = None  # (projection, aggregate) skipped as parked
    #: the accounts this batch updated (their account_state rows: engine/projections/accounts)
    accounts: dict[UUID, Account] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.events = {}
        self.leads, self.touches, self.stages, self.costs = {}, [], [], []
        self.routings, self.milestones, self.cost_owners, self.first_seen = [], [], [], {}
        self.skipped = set()

    def event_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """The history rows this batch adds (one per event), by table."""
        return {
            "lead_touchpoints": self.touches or [],
            "lead_milestones": self.milestones or [],
            "lead_stage_history": self.stages or [],
            "lead_routing": self.routings or [],
            "campaign_costs": self.costs or [],
            identity.TABLE: self.links,
            identity.PEOPLE_TABLE: [],
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
        cache_size: int = 10_000,  # LEADENGINE_CACHE_SIZE
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
        #: aggregates set aside, per projection, and the parks not yet committed
        self._parked: dict[str, set[UUID]] = {name: set() for name in PROJECTIONS}
        self._some_parked = False
        self._parks: list[Park] = []
        #: whether this projector has recorded its rules in `rules_applied` (None: no such
        #: table in its schema, e.g. a rebuild's staging schema)
        self._rules_noted: bool | None = False
        #: the account tables' inputs and settled rows (None: load from the tables first)
        self._book: accounts.AccountBook | None = None
        #: account_signals rows of the leads `_lead_rows` made rows for last
        self._signals: list[tuple[Any, ...]] = []

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
        self._load_parked()
        batch = Batch()
        self.app.sealed_mapper.prefetch_keys(notifications)  # the leads' keys: one round trip
        for notification in notifications:
            want = self._wanted(positions, notification.id, batch)
            self._take(notification, notification.id, batch, want)
            batch.last_position = notification.id
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
        return {name: len(self._parked[name]) for name in self.names}

    def _load_parked(self) -> None:
        """Read the parked aggregates (a retry elsewhere may have brought some back)."""
        try:
            found = parking.load(self._connection(), self.db.schema, self.names)
        except psycopg.OperationalError:
            self.close()  # the next batch reconnects
            raise
        self._parked.update(found)
        self._some_parked = any(self._parked.values())
        self._parks = []

    def _parked_metric(self) -> None:
        for name in self.names:
            metrics.parked_leads.labels(projection=name).set(len(self._parked[name]))

    def _take(self, stored: StoredEvent, position: int, batch: Batch, want: frozenset[str]) -> None:
        """Decode and fold one stored event, for the projections that have not parked its
        aggregate; a failure parks the aggregate instead of stopping the batch."""
        originator = cast(UUID, stored.originator_id)
        if self._some_parked:
            skipped = [n for n in want if originator in self._parked[n]]
            if skipped:
                assert batch.skipped is not None
                batch.skipped.update((n, originator) for n in skipped)
                want = want.difference(skipped)
                if not want:
                    self._cache.pop(originator, None)  # if it comes back, read from the store
                    return
        assert batch.first_seen is not None
        batch.first_seen.setdefault(originator, position)
        try:
            event = self.app.sealed_mapper.to_domain_event(stored)
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            self._failed(exc, want, originator, position, batch, evict=True)
            return
        self._fold(event, position, batch, want)

    def _failed(
        self,
        exc: Exception,
        projections: frozenset[str] | set[str],
        originator: UUID,
        position: int,
        batch: Batch | None,
        table: str | None = None,
        *,
        evict: bool = False,
    ) -> None:
        """Park `originator` in `projections`: its later events are skipped there. `evict`: the
        aggregate itself could not take the event (its cached state is no longer whole)."""
        agg = self._cache.pop(originator, None) if evict else self._cache.get(originator)
        key = agg.key if isinstance(agg, Lead) else None
        if key is None and batch is not None and batch.leads and originator in batch.leads:
            key = batch.leads[originator].key
        error, reason = parking.describe(exc, key, table)
        for name in projections:
            if originator in self._parked.setdefault(name, set()):
                continue
            self._parked[name].add(originator)
            self._some_parked = True
            self._parks.append(Park(name, originator, key, position, error, reason))
            log.warning(
                "aggregate parked: its later events are skipped until `projections retry`",
                projection=name,
                aggregate=str(originator),
                position=position,
                reason=reason,
            )
        if "leads" in projections and batch is not None and batch.leads is not None:
            batch.leads.pop(originator, None)

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
        try:
            agg = self._aggregate(event)  # every event folds, wanted or not: aggregates stay whole
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            self._failed(exc, want, event.originator_id, position, batch, evict=True)
            return
        if not want:
            return
        try:
            self._rows(agg, event, position, batch, want)
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            projection = _projection_of(event)
            self._failed(exc, want & {projection}, event.originator_id, position, batch)

    def _rows(
        self, agg: Any, event: Any, position: int, batch: Batch, want: frozenset[str]
    ) -> None:
        """Add the rows `event` makes (for the projections in `want`) to the batch."""
        assert batch.leads is not None and batch.touches is not None
        assert batch.stages is not None and batch.costs is not None
        if isinstance(agg, Account):
            if "leads" in want:
                batch.accounts[agg.id] = agg
            return
        if isinstance(agg, Campaign):
            if isinstance(event, Campaign.CostRecorded) and "costs" in want:
                assert batch.cost_owners is not None
                batch.costs.append(rows.cost_row(agg, event))
                batch.cost_owners.append(agg.id)
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
        elif isinstance(event, Lead.StageRetracted) and "history" in want:
            _retract(batch, lead.id, event.version_retracted, event.timestamp)
        elif isinstance(event, (Lead.Routed, Lead.RoutingFailed)) and "history" in want:
            assert batch.routings is not None
            batch.routings.append(rows.routing_row(lead, event))
        elif isinstance(event, Lead.Linked) and "history" in want:
            batch.links.append(identity.link_row(event, position))

    def _lead_rows(
        self, leads: list[Lead], first_seen: dict[UUID, int]
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The leads' current rows (state, a score per model, SLA), by table. A lead whose rows
        cannot be made is parked in `leads` (at its first notification in `first_seen`)."""
        rules = self.app.rules
        parked = self._parked["leads"]
        lead_rows: list[tuple[Any, ...]] = []
        score_rows: list[tuple[Any, ...]] = []
        sla_rows: list[tuple[Any, ...]] = []
        self._signals = []
        for lead in leads:
            # A batch may end between a lead's creation and its first fact; the next has it.
            if not lead.facts or lead.id in parked:
                continue
            try:
                primary = lead.current_score(rules, explain=False)  # once for state and scores
                state = rows.lead_state_row(lead, rules, primary)
                scores = rows.score_rows(lead, rules, primary)
                sla = rows.sla_row(lead, rules.sla) if rules.sla is not None else None
                signals = accounts.signals_row(lead, primary.engagement)
            except INFRASTRUCTURE:
                raise
            except Exception as exc:
                self._failed(exc, {"leads"}, lead.id, first_seen.get(lead.id, 0), None)
                continue
            lead_rows.append(state)
            self._signals.append(signals)
            score_rows.extend(scores)
            if sla is not None:
                sla_rows.append(sla)
        return {"lead_state": lead_rows, "lead_scores": score_rows, "lead_sla": sla_rows}

    def _write(self, batch: Batch, positions: dict[str, int], started: float) -> dict[str, int]:
        """Commit the batch's rows, parks and new positions in one transaction. If the database
        rejects a row, write again, each aggregate's rows in a savepoint: park the offenders."""
        assert batch.leads is not None and batch.events is not None
        assert batch.first_seen is not None and batch.cost_owners is not None
        leads = self._lead_rows(list(batch.leads.values()), batch.first_seen)
        values = {**batch.event_rows(), **leads}
        moving = {n: at for n, at in positions.items() if batch.last_position > at}
        signals = self._signals if "leads" in moving else []
        states = [accounts.state_row(a) for a in batch.accounts.values()]
        conn = self._connection()
        seconds = time.perf_counter() - started

        noted = False

        def commit(write_rows: Callable[[Cursor[Any]], None]) -> None:
            nonlocal noted
            assert batch.events is not None
            with conn.transaction(), conn.cursor() as cur:
                for name, expected in moving.items():
                    events = batch.events.get(name, 0)
                    self._advance(cur, name, expected, batch.last_position, events, seconds)
                self._still_parked(cur, batch.skipped)
                if "leads" in moving and self._rules_noted is False:
                    noted = self._note_rules(cur, moving["leads"] + 1)
                write_rows(cur)
                if values[identity.TABLE]:  # a new link, merge or unmerge: people again
                    identity.refresh(cur, self.db.schema)
                if signals or states:
                    self._write_accounts(cur, states, signals)
                self._write_rekeys(cur, batch)
                self._write_retractions(cur, batch)
                parking.record(cur, self.db.schema, self._parks)

        def upserts(cur: Cursor[Any]) -> None:
            for table in TABLES:
                self._upsert_rows(cur, table, values[table])

        def isolated(cur: Cursor[Any]) -> None:
            owners, first_seen = batch.cost_owners, batch.first_seen
            assert owners is not None and first_seen is not None
            self._write_isolated(cur, values, owners, first_seen, self._upsert_rows)

        try:
            try:
                commit(upserts)
            except ROW_ERRORS:
                self._book = None  # what it settled did not commit: read the tables again
                commit(isolated)  # the slow path: each aggregate's rows in a savepoint
        except psycopg.OperationalError:
            self._book = None
            self.close()
            raise
        except BaseException:
            self._book = None
            raise
        if noted:  # committed with the batch
            self._rules_noted = True
        self._parks = []
        return {n: (batch.last_position if n in moving else at) for n, at in positions.items()}

    def _write_accounts(
        self, cur: Cursor[Any], states: list[tuple[Any, ...]], signals: list[tuple[Any, ...]]
    ) -> None:
        """The batch's account_state and account_signals rows, then whatever settling all
        accounts again changed in account_members and account_scores (in the batch's
        transaction)."""
        schema = self.db.schema
        if self._book is None:
            self._book = accounts.AccountBook()
            self._book.load(cur, schema)
        accounts.upsert(cur, schema, "account_state", states)
        accounts.upsert(cur, schema, "account_signals", signals)
        # the account decisions' own events change only an account's version (the book holds
        # their decisions already): nothing settling reads, so no settling for them
        settle = bool(signals) or any(not self._book.same_profile(row) for row in states)
        for row in states:
            self._book.put_state(row)
        if not settle:
            return
        for row in signals:
            self._book.put_signals(row)
        book = self._book
        settled = book.settle(self.app.rules, decide=True)
        stored = self.app.record_account_decisions(book.mqa_decisions, book.member_decisions)
        states, scores = book.recorded(stored)  # account_state.mqa before their event comes
        for table, changed in settled.items():
            accounts.upsert(cur, schema, table, changed)
        accounts.upsert(cur, schema, "account_state", states)
        accounts.upsert(cur, schema, "account_scores", scores)

    def settle_accounts(self, cur: Cursor[Any] | None = None) -> None:
        """Fill the (empty) account_members and account_scores tables from the account_state
        and account_signals rows the bulk load wrote (all parts of it)."""
        if cur is None:
            with self._connection().transaction(), self._connection().cursor() as own:
                self.settle_accounts(own)
            return
        book = accounts.AccountBook()
        book.load(cur, self.db.schema)
        for table, settled in book.settle(self.app.rules).items():
            accounts.copy(cur, self.db.schema, table, settled)
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

    def _write_rekeys(self, cur: Cursor[Any], batch: Batch) -> None:
        for table, pairs in batch.rekeys.items():
            cur.executemany(self._rekeys[table], pairs)

    def _write_retractions(self, cur: Cursor[Any], batch: Batch) -> None:
        if batch.retracted:
            cur.executemany(
                sql.SQL(
                    "UPDATE {} SET retracted_at = %s WHERE lead_id = %s AND version = %s "
                    "AND retracted_at IS NULL"
                ).format(sql.Identifier(self.db.schema, "lead_stage_history")),
                batch.retracted,
            )

    def _still_parked(self, cur: Cursor[Any], skipped: set[tuple[str, UUID]] | None) -> None:
        """Raise Unparked if a lead whose events the batch skipped is parked no more (a retry
        committed while the batch was folded; it held the positions, so this runs after it)."""
        skipped = (skipped or set()) - {(p.projection, p.originator_id) for p in self._parks}
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

    def _upsert_rows(self, cur: Cursor[Any], table: str, values: list[tuple[Any, ...]]) -> None:
        if values:
            cur.executemany(self._upserts[table], values)

    def _write_isolated(
        self,
        cur: Cursor[Any],
        values: dict[str, list[tuple[Any, ...]]],
        cost_owners: list[UUID],
        first_seen: dict[UUID, int],
        write: Writer,
    ) -> None:
        """Write each aggregate's rows of each projection in a savepoint of their own; park the
        aggregates whose rows the database rejects (the slow path, taken only after a failure)."""
        groups: dict[tuple[str, UUID], dict[str, list[tuple[Any, ...]]]] = {}
        for table in TABLES:
            projection = TABLE_PROJECTION[table]
            for i, row in enumerate(values.get(table, ())):
                owner = cost_owners[i] if table == "campaign_costs" else row[0]
                groups.setdefault((projection, owner), {}).setdefault(table, []).append(row)
        for (projection, owner), tables in groups.items():
            table = ""
            try:
                with cur.connection.transaction():
                    for table, table_rows in tables.items():
                        write(cur, table, table_rows)
            except ROW_ERRORS as exc:
                self._failed(exc, {projection}, owner, first_seen.get(owner, 0), None, table)

    def _write_all(
        self,
        cur: Cursor[Any],
        values: dict[str, list[tuple[Any, ...]]],
        cost_owners: list[UUID],
        first_seen: dict[UUID, int],
    ) -> None:
        """COPY rows into the bulk load's tables (in a savepoint: if one is rejected, again an
        aggregate at a time, parking the offenders)."""
        try:
            with cur.connection.transaction():
                for table, table_rows in values.items():
                    self._copy(cur, table, table_rows)
        except ROW_ERRORS:
            self._write_isolated(cur, values, cost_owners, first_seen, self._copy)

    def reproject(self, streams: dict[UUID, set[str]], positions: dict[str, int]) -> list[Park]:
        """Re-fold parked aggregates from their whole streams and write their rows, each in a
        savepoint of its own: `streams` maps each aggregate to the projections it is parked in,
        each projected up to its position in `positions`. Runs in the caller's transaction
        (`use_connection`); returns the parks of the aggregates that failed again."""
        self._parked = {name: set() for name in PROJECTIONS}
        self._some_parked, self._parks = False, []
        schema, table = self.log_table()
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
            "WHERE originator_id = %s AND notification_id <= %s ORDER BY originator_version"
        ).format(sql.Identifier(schema, table))
        batch = Batch()
        conn = self._connection()
        for originator, wanted in streams.items():
            self._cache.pop(originator, None)  # folded from its first event, under today's code
            until = max(positions[name] for name in wanted)
            for position, agg_id, version, topic, state in conn.execute(
                query, (originator, until)
            ).fetchall():
                want = frozenset(n for n in wanted if position <= positions[n])
                self._take(StoredEvent(agg_id, version, topic, state), position, batch, want)
        assert batch.leads is not None and batch.first_seen is not None
        assert batch.cost_owners is not None and batch.stages is not None
        batch.retracted += [  # re-folded rows may be in the table already, unstamped
            (row[RETRACTED], row[0], row[1]) for row in batch.stages if row[RETRACTED]
        ]
        values = {
            **batch.event_rows(),
            **self._lead_rows(list(batch.leads.values()), batch.first_seen),
        }
        with conn.transaction(), conn.cursor() as cur:
            self._write_isolated(
                cur, values, batch.cost_owners, batch.first_seen, self._upsert_rows
            )
            self._write_retractions(cur, batch)
        failed, self._parks = self._parks, []
        return failed

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
        accounts_seen: dict[UUID, Account] = {}
        seen: dict[UUID, int] = {}  # each aggregate's first notification (for its park)
        self._load_parked()
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
                    self._take(event, position, batch, want)
                assert batch.leads is not None and batch.first_seen is not None
                assert batch.cost_owners is not None
                leads.update(batch.leads)
                accounts_seen.update(batch.accounts)
                for agg_id, position in batch.first_seen.items():
                    seen.setdefault(agg_id, position)
                self._write_all(cur, batch.event_rows(), batch.cost_owners, seen)
                self._write_rekeys(cur, batch)
                self._write_retractions(cur, batch)
                parking.record(cur, self.db.schema, self._parks)
                self._parks = []
                done += len(page)
                metrics.projector_batch_seconds.observe(time.perf_counter() - started)
                metrics.projector_events.inc(len(page))
                if progress:
                    progress(done, page[-1][0])
            if "history" in want:
                identity.refresh(
                    cur, self.db.schema
                )  # this part's links (a rebuild: all, at the switch)
            if "leads" in want:
                self._write_all(cur, self._lead_rows(list(leads.values()), seen), [], seen)
                parking.record(cur, self.db.schema, self._parks)
                self._parks = []
                states = [accounts.state_row(a) for a in accounts_seen.values()]
                accounts.copy(cur, self.db.schema, "account_state", states)
                accounts.copy(cur, self.db.schema, "account_signals", self._signals)
                if n == 1:  # all of the log here: settle now (parts: once all are in)
                    self.settle_accounts(cur)
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


def _retract(batch: Batch, lead_id: UUID, version: int, at: datetime) -> None:
    """Stamp a stage-history row retracted at `at`: in the batch if it is there, else queue
    the update of the table's row (written by an earlier batch)."""
    assert batch.stages is not None
    for i, row in enumerate(batch.stages):
        if row[0] == lead_id and row[1] == version:
            batch.stages[i] = (*row[:RETRACTED], at, *row[RETRACTED + 1 :])
            return
    batch.retracted.append((at, lead_id, version))


def _projection_of(event: Any) -> str:
    """The projection whose rows `event` makes (the one to park its aggregate in if that fails)."""
    if isinstance(event, Campaign.CostRecorded):
        return "costs"
    if isinstance(event, Lead.FactRecorded) and (
        event.event_type.startswith("touch.") or event.event_type in rows.MILESTONE_TYPES
    ):
        return "touchpoints"
    if isinstance(
        event,
        (
            Lead.StageChanged,
            Lead.StageRetracted,
            Lead.MarketingQualified,
            Lead.Routed,
            Lead.RoutingFailed,
            Lead.Linked,
        ),
    ):
        return "history"
    return "leads"
