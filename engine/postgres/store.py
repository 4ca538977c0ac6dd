"""What the application asks of the event store beyond loading and saving aggregates: which of
a batch's aggregates exist already, the lead id scheme the schema records, and the stored
events of one topic (read by the recorder's topic filter, a page at a time)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Notification, Recorder, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresDatastore
from psycopg import sql

from engine.domain.leadids import KEYED, SCHEME_TABLE
from engine.postgres import binarray


def datastore_of(recorder: Recorder) -> PostgresDatastore | None:
    """The recorder's PostgreSQL datastore; None for the in-memory store."""
    return recorder.datastore if isinstance(recorder, PostgresAggregateRecorder) else None


def existing(recorder: Recorder, ids: Iterable[UUID]) -> set[UUID] | None:
    """Those of `ids` with at least one stored event, in one query; None for the in-memory
    store (a lookup there costs nothing)."""
    if not isinstance(recorder, PostgresAggregateRecorder):
        return None
    datastore = recorder.datastore
    statement = sql.SQL(
        "SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%s)"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (list(ids),))
        return {UUID(str(row["originator_id"])) for row in curs.fetchall()}


def stored_scheme(datastore: PostgresDatastore) -> str:
    """The lead id scheme recorded for the store's schema (migration 7); keyed if none is."""
    table = f"{datastore.schema}.{SCHEME_TABLE}"
    with datastore.get_connection() as conn, conn.cursor() as c:
        c.execute("SELECT to_regclass(%s) AS t", (table,))
        found = c.fetchone()
        if not found or found["t"] is None:
            return KEYED
        c.execute(
            sql.SQL("SELECT scheme FROM {} WHERE id = 1").format(
                sql.Identifier(datastore.schema, SCHEME_TABLE)
            )
        )
        row = c.fetchone()
    return str(row["scheme"]) if row else KEYED


def by_topic(recorder: ApplicationRecorder, topic: str, page: int = 1000) -> Iterator[Notification]:
    """The stored events of one topic in log order, `page` rows per query (a few rows per
    linked lead, never the whole log), on PostgreSQL and in memory alike."""
    start = 1
    while True:
        rows = recorder.select_notifications(start, page, topics=[topic])
        yield from rows
        if len(rows) < page:
            return
        start = rows[-1].id + 1


def stored_streams(recorder: Recorder, ids: Iterable[UUID]) -> dict[UUID, list[StoredEvent]] | None:
    """Every stored event of `ids`, by aggregate in version order, in one query (instead of
    one `select_events` per aggregate); an id with no event is absent. None for the in-memory
    store."""
    if not isinstance(recorder, PostgresAggregateRecorder):
        return None
    datastore = recorder.datastore
    statement = sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE originator_id = ANY(%b) ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (list(ids),))
        return _by_aggregate(curs.fetchall())


def streams_after_statement(schema: str, events_table: str) -> sql.Composed:
    """Each wanted id's events above its version, by a lateral index probe per id. The
    `OFFSET 0` keeps the planner from flattening the probe into a join: a table never
    analyzed (autovacuum off, or a backfill before the first autoanalyze) looks like ~9,000
    rows per id to it, and the join became a sequential scan of the whole log per batch,
    so ingest slowed as the store grew (seen at 1.5 million events: 0.2-0.5 s a batch)."""
    return sql.SQL(
        "SELECT e.originator_id, e.originator_version, e.topic, e.state "
        "FROM unnest(%b::uuid[], %b::bigint[]) AS w(i, v) CROSS JOIN LATERAL ("
        "SELECT x.originator_id, x.originator_version, x.topic, x.state FROM {}.{} x "
        "WHERE x.originator_id = w.i AND x.originator_version > w.v OFFSET 0) e "
        "ORDER BY e.originator_id, e.originator_version"
    ).format(sql.Identifier(schema), sql.Identifier(events_table))


def streams_after(
    recorder: Recorder, after: dict[UUID, int]
) -> dict[UUID, list[StoredEvent]] | None:
    """The stored events of each id in `after` with a version above the one given (0: all),
    by aggregate in version order, in one query; an id with none is absent. None for the
    in-memory store."""
    if not isinstance(recorder, PostgresAggregateRecorder):
        return None
    if not after:
        return {}
    datastore = recorder.datastore
    statement = streams_after_statement(datastore.schema, recorder.events_table_name)
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (list(after), binarray.int8s(after.values())), prepare=True)
        return _by_aggregate(curs.fetchall())


def _by_aggregate(rows: Iterable[Any]) -> dict[UUID, list[StoredEvent]]:
    """Stored-event rows (ordered by aggregate and version) grouped by aggregate."""
    streams: dict[UUID, list[StoredEvent]] = {}
    for row in rows:
        agg_id = row["originator_id"]
        agg_id = agg_id if isinstance(agg_id, UUID) else UUID(str(agg_id))
        streams.setdefault(agg_id, []).append(
            StoredEvent(agg_id, row["originator_version"], row["topic"], bytes(row["state"]))
        )
    return streams


def events_naming(
    recorder: Recorder, topic: str, needle: str
) -> list[tuple[int, StoredEvent]] | None:
    """The stored events of `topic` whose state contains `needle` (a candidate filter: the
    caller decodes each and checks the field), with their log position, in log order; None for
    the in-memory store. A scan of the events table filtered in the database: for one-off
    reads (`lead explain --as-of`), not for a consumer's loop."""
    if not isinstance(recorder, PostgresAggregateRecorder):
        return None
    datastore = recorder.datastore
    statement = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE topic = %s AND position(%b in state) > 0 ORDER BY notification_id"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (topic, needle.encode()))
        return [
            (
                int(row["notification_id"]),
                StoredEvent(
                    row["originator_id"]
                    if isinstance(row["originator_id"], UUID)
                    else UUID(str(row["originator_id"])),
                    row["originator_version"],
                    row["topic"],
                    bytes(row["state"]),
                ),
            )
            for row in curs.fetchall()
        ]
