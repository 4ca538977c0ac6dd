"""`leadengine projections rebuild NAME`: a new version of a projection's tables, built beside the
live ones from the whole log, then switched in with one transaction.

1. A staging schema `<schema>_rebuild` gets empty copies of the projection's tables (same
   columns and defaults as the live ones; no indexes yet, so the load is not slowed by them).
2. `Projector.bulk_load` fills them from the start of the log up to the head seen at the start
   (every aggregate in memory, rows streamed with COPY). Then the indexes and primary keys are
   added with the live tables' exact definitions and names, and the tables are analyzed.
3. Catch-up: the ordinary projector, pointed at the staging schema, projects what arrived
   meanwhile, until it is close to the head.
4. The switch, one transaction: lock the live projection's tracking row (a running projector
   finishes its batch first; its next one waits), project the last few events, move the live
   tables aside, move the staging tables in under the same names, replace the views that read
   them in place with their own definitions (so they read the new tables: nothing built on
   them, in any schema, is dropped), drop the old tables and set the live position to the
   rebuilt one. Readers see the old tables until the commit and the new ones after it; a
   running projector's next batch finds its position moved and resumes from the new one.
   What cannot be carried over (a materialized view or a foreign key on a live table, a view
   over it the engine's user may not replace) stops the rebuild before it starts, with the
   list (engine/postgres/dependents.py).

A lead the rebuild cannot fold or write is parked (in the staging schema's `parked`) instead of
failing the rebuild; the switch replaces the projection's parked leads with the rebuild's, so a
lead parked before and fine under today's code comes back.

Only one rebuild runs at a time per schema (advisory lock). An interrupted rebuild leaves the
live tables untouched; the next one starts over (the staging schema is dropped first).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from psycopg import errors, sql

from engine.domain.errors import LeadEngineError
from engine.domain.rules import Rules
from engine.logs import get_logger
from engine.postgres import dependents
from engine.postgres.db import Connection, Database
from engine.projections import identity, parking, registry
from engine.projections.projector import CHUNK_EVENTS, PROJECTIONS, Projector, names
from engine.services.application import LeadEngine

log = get_logger("engine.rebuild")

#: Stop catching up in the background once this close to the head; the rest is projected
#: inside the switch transaction.
CLOSE_ENOUGH = 5_000
#: prctl(2) option: the signal a process gets when its parent ends
PR_SET_PDEATHSIG = 1


@dataclass
class RebuildReport:
    projection: str
    tables: tuple[str, ...]
    events: int  # notifications read by the bulk load
    caught_up: int  # projected afterwards (background catch-up and inside the switch)
    position: int  # the live position after the switch
    load_seconds: float
    index_seconds: float
    switch_seconds: float
    total_seconds: float
    rows: dict[str, int]
    parked: int = 0  # leads the rebuilt projection set aside (`leadengine projections retry`)

    @property
    def events_per_second(self) -> float:
        return self.events / self.load_seconds if self.load_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["tables"] = list(self.tables)
        doc["events_per_second"] = round(self.events_per_second)
        return doc


def staging_schema(schema: str) -> str:
    return f"{schema}_rebuild"


#: `projections rebuild --workers` at most: each is a process holding a database connection
MAX_REBUILD_WORKERS = 16

def rebuild(
    app: LeadEngine,
    db: Database,
    name: str,
    *,
    batch_size: int = 20_000,
    workers: int | None = None,
    chunk_events: int = CHUNK_EVENTS,
    progress: Callable[[str, int, int], None] | None = None,
    before_switch: Callable[[], None] | None = None,
    in_switch: Callable[[], None] | None = None,
) -> RebuildReport:
    """Rebuild projection `name` beside the live one and switch to it atomically.

    `workers` processes load side by side, each the aggregates of its part of the ids
    (default: one per CPU, up to 4, when the log has 50,000 events or more), each reading
    its aggregates a range of ids of about `chunk_events` notifications at a time (its memory).
    `progress(phase, done, total)` is called during the load and the catch-up. For tests:
    `before_switch` runs after the catch-up, just before the switch transaction; `in_switch`
    inside it, after the swap and before the commit."""
    (name,) = names(name)
    tables = PROJECTIONS[name]
    staging = db.with_schema(staging_schema(db.schema))
    started = time.perf_counter()
    with db.connect() as guard:
        locked = guard.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", (f"leadengine-rebuild:{db.schema}",)
        ).fetchone()
        if not (locked and locked[0]):
            raise LeadEngineError(f"another rebuild is running on schema {db.schema}")
        with guard.transaction():  # refuse now, not after the load
            dependents.plan_repoint(guard, [dependents.qualified(db.schema, t) for t in tables])
        _prepare_staging(db, staging, tables)
        head = app.recorder.max_notification_id() or 0
        log.info("rebuild started", projection=name, tables=list(tables), head=head)
        builder = Projector(app, staging, only=name, batch_size=batch_size)
        try:
            t0 = time.perf_counter()
            events = _load(builder, head, workers, progress, chunk_events)
            load_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            _add_indexes(db, staging, tables)
            index_seconds = time.perf_counter() - t0
            caught_up = 0
            while builder.lag() > CLOSE_ENOUGH:
                step = builder.run(until_caught_up=True)
                caught_up += step
                if progress:
                    progress("catch-up", caught_up, caught_up + builder.lag())
            if before_switch:
                before_switch()
            t0 = time.perf_counter()
            caught, position = _switch_patiently(db, staging, builder, name, tables, in_switch)
            caught_up += caught
            switch_seconds = time.perf_counter() - t0
        finally:
            builder.close()
            with db.connect() as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(staging.schema)
                    )
                )
        with db.connect() as conn:
            counts = {
                t: int(
                    conn.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db.schema, t))
                    ).fetchone()[0]  # type: ignore[index]
                )
                for t in tables
            }
            found = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE projection = %s").format(
                    sql.Identifier(db.schema, "parked")
                ),
                (name,),
            ).fetchone()
    report = RebuildReport(
        name,
        tables,
        events,
        caught_up,
        position,
        load_seconds,
        index_seconds,
        switch_seconds,
        time.perf_counter() - started,
        counts,
        int(found[0]) if found else 0,
    )
    log.info("rebuild switched", **report.as_dict())
    return report


#: Below this many events a rebuild loads in one process (starting others costs more).
PARALLEL_FROM = 50_000


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The load's worker processes: spawned, and ended with the rebuild that started them
    (stopped, killed, or a test's timeout), not left running with open transactions."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def _die_with_parent(parent: int) -> None:
    """In a worker: SIGTERM when the parent ends (Linux's parent-death signal; elsewhere the
    executor's own shutdown), and end at once if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)


def _load(
    builder: Projector,
    head: int,
    workers: int | None,
    progress: Callable[[str, int, int], None] | None,
    chunk_events: int = CHUNK_EVENTS,
) -> int:
    """The bulk load: in this process, or split by aggregate id over `workers` processes
    (this one included), each in its own transaction; the position is recorded once all are
    in."""
    n = workers or (min(os.cpu_count() or 1, 4) if head >= PARALLEL_FROM else 1)
    n = max(1, n)

    def report(done: int, _position: int) -> None:
        if progress:
            progress("load", min(done * n, head), head)  # this process's share, scaled

    if n == 1:
        return builder.bulk_load(until=head, progress=report, chunk_events=chunk_events)
    log_table = builder.log_table()
    with worker_pool(n - 1) as pool:
        others = [
            pool.submit(
                _load_part,
                builder.app.rules,
                builder.app.master_key,  # opens the leads' keys (read models show them)
                builder.db,  # the staging schema
                log_table,
                builder.names,
                head,
                (k, n),
                builder.batch_size,
                chunk_events,
            )
            for k in range(1, n)
        ]
        done = builder.bulk_load(
            until=head,
            progress=report,
            log_table=log_table,
            part=(0, n),
            track=False,
            chunk_events=chunk_events,
        )
        done += sum(f.result() for f in others)
    if "leads" in builder.names:
        builder.settle_accounts()  # accounts are decided over every part's leads
    builder.record_position(head, done)
    return done


def _load_part(
    rules: Rules,
    master_key: bytes,
    staging: Database,
    log_table: tuple[str, str],
    only: tuple[str, ...],
    head: int,
    part: tuple[int, int],
    batch_size: int,
    chunk_events: int = CHUNK_EVENTS,
) -> int:
    """One worker process's share of a parallel load. It only decodes and folds (personal
    data stays sealed); it opens the leads' keys (their rows show them), so its application
    reads the live store's key table with the deployment's master key."""
    live = staging.with_schema(log_table[0])
    app = LeadEngine(rules=rules, env=live.eventsourcing_env(), master_key=master_key)
    projector = Projector(app, staging, only=only, batch_size=batch_size)
    try:
        return projector.bulk_load(
            until=head, log_table=log_table, part=part, track=False, chunk_events=chunk_events
        )
    finally:
        projector.close()
        app.close()


def _prepare_staging(db: Database, staging: Database, tables: tuple[str, ...]) -> None:
    live, stage = sql.Identifier(db.schema), sql.Identifier(staging.schema)
    with db.connect() as conn, conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(stage))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(stage))
        for table in ("projection_tracking", "parked"):
            conn.execute(
                sql.SQL("CREATE TABLE {}.{} (LIKE {}.{} INCLUDING ALL)").format(
                    stage, sql.Identifier(table), live, sql.Identifier(table)
                )
            )
        for table in tables:
            t = sql.Identifier(table)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {}.{} (LIKE {}.{} INCLUDING DEFAULTS INCLUDING GENERATED "
                    "INCLUDING STORAGE INCLUDING COMMENTS)"
                ).format(stage, t, live, t)
            )


def _add_indexes(db: Database, staging: Database, tables: tuple[str, ...]) -> None:
    """Give the staging tables the live tables' indexes and key constraints, same names."""
    with db.connect() as conn, conn.transaction():
        for table in tables:
            qualified = conn.execute(
                "SELECT format('%%I.%%I', %s::text, %s::text), "
                "format('%%I.%%I', %s::text, %s::text)",
                (db.schema, table, staging.schema, table),
            ).fetchone()
            assert qualified is not None
            live_name, stage_name = qualified
            found = conn.execute(
                """
                SELECT i.relname, pg_get_indexdef(x.indexrelid), c.conname, c.contype
                FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
                WHERE x.indrelid = to_regclass(%s)
                ORDER BY i.relname
                """,
                (live_name,),
            ).fetchall()
            for _index, definition, constraint, kind in found:
                marker = f" ON {live_name} "
                if marker not in definition:  # pragma: no cover - pg_get_indexdef changed form
                    raise LeadEngineError(f"cannot copy index definition: {definition}")
                conn.execute(definition.replace(marker, f" ON {stage_name} ", 1))
                if constraint and kind in ("p", "u"):
                    what = "PRIMARY KEY" if kind == "p" else "UNIQUE"
                    conn.execute(
                        sql.SQL(
                            "ALTER TABLE {} ADD CONSTRAINT {} " + what + " USING INDEX {}"
                        ).format(
                            sql.Identifier(staging.schema, table),
                            sql.Identifier(constraint),
                            sql.Identifier(_index),
                        )
                    )
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(staging.schema, table)))


#: The switch gives up a lock it cannot get within this long, rolls back and tries again, so
#: a reader it collides with is never the one PostgreSQL aborts (deadlock_timeout is 1 s).
SWITCH_LOCK_TIMEOUT = "400ms"
SWITCH_ATTEMPTS = 25


def _switch_patiently(
    db: Database,
    staging: Database,
    builder: Projector,
    name: str,
    tables: tuple[str, ...],
    in_switch: Callable[[], None] | None,
) -> tuple[int, int]:
    """The switch, retried while readers hold the views it must drop. The last attempt waits
    as long as it takes."""
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        last = attempt == SWITCH_ATTEMPTS
        try:
            return _switch(
                db, staging, builder, name, tables, in_switch,
                lock_timeout="0" if last else SWITCH_LOCK_TIMEOUT,
            )  # fmt: skip
        except (errors.LockNotAvailable, errors.DeadlockDetected) as exc:
            if last:
                raise
            log.info("rebuild switch waits for readers", attempt=attempt, reason=str(exc))
            time.sleep(min(0.1 * attempt, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _switch_parked(conn: Connection, live: str, staging: str, name: str) -> None:
    """The projection's parked leads become the rebuild's: those it could fold come back."""
    columns = sql.SQL(", ").join(map(sql.Identifier, (*parking.COLUMNS, "parked_at")))
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE projection = %s").format(sql.Identifier(live, "parked")),
        (name,),
    )
    conn.execute(
        sql.SQL("INSERT INTO {} ({c}) SELECT {c} FROM {} WHERE projection = %s").format(
            sql.Identifier(live, "parked"), sql.Identifier(staging, "parked"), c=columns
        ),
        (name,),
    )


def _swap(conn: Connection, live: str, staging: str, tables: tuple[str, ...]) -> None:
    """Put the staging tables in place of the live ones, keeping every view over them.

    The views that read the live tables are locked first (in the readers' order), the live
    tables are moved aside (`<schema>_retired`, gone at the commit), the new ones moved in
    under the same names, and each of those views is replaced in place with its own
    definition, so it reads the new tables: views built on it, the contract's and a reporting
    team's in their own schemas, are never dropped (engine/postgres/dependents.py)."""
    retired = sql.Identifier(f"{live}_retired")
    plan = dependents.plan_repoint(conn, [dependents.qualified(live, t) for t in tables])
    dependents.lock(conn, plan)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(retired))
    for table in tables:
        t = sql.Identifier(table)
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(sql.Identifier(live), t, retired)
        )
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                sql.Identifier(staging), t, sql.Identifier(live)
            )
        )
    dependents.repoint(conn, plan)
    for table in tables:  # the table's own comment (its columns' came with LIKE)
        for statement in registry.table_comments(live, registry.TABLES[table]):
            conn.execute(statement)
    for table in tables:  # nothing reads them now: no CASCADE, so nothing else can go
        conn.execute(sql.SQL("DROP TABLE {}.{}").format(retired, sql.Identifier(table)))
    conn.execute(sql.SQL("DROP SCHEMA {}").format(retired))


def _switch(
    db: Database,
    staging: Database,
    builder: Projector,
    name: str,
    tables: tuple[str, ...],
    in_switch: Callable[[], None] | None = None,
    *,
    lock_timeout: str = "0",
) -> tuple[int, int]:
    """Catch up the last events and swap the tables in, all in one transaction."""
    tracking = sql.Identifier(db.schema, "projection_tracking")
    with db.connect() as conn, conn.transaction():
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, position) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING"
            ).format(tracking),
            (name,),
        )
        conn.execute(
            sql.SQL("SELECT position FROM {} WHERE name = %s FOR UPDATE").format(tracking), (name,)
        )
        builder.use_connection(conn)
        caught = builder.run(until_caught_up=True)
        position = builder.position()
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(lock_timeout)))
        if identity.PEOPLE_TABLE in tables:  # parts loaded side by side: people from all links
            identity.refresh(conn, staging.schema)
        _swap(conn, db.schema, staging.schema, tables)
        conn.execute("SET LOCAL lock_timeout = 0")  # the rest is our own rows
        conn.execute(
            sql.SQL("UPDATE {} SET position = %s, updated_at = now() WHERE name = %s").format(
                tracking
            ),
            (position, name),
        )
        _switch_parked(conn, db.schema, staging.schema, name)
        if in_switch:
            in_switch()
    return caught, position
