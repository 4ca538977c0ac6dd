"""Hot-path reads keep an index plan on a log PostgreSQL has never analyzed.

With autovacuum off (some operators turn it off for backfills; this CI's server runs without
it) or before the first autoanalyze, the planner has no statistics for the events table and
guesses thousands of rows per aggregate id. The batch read of stored streams then became a
hash join over a sequential scan of the whole log, once per ingest batch: ingest slowed as the
store grew (0.2-0.5 s a batch at 1.5 million events in the 1,000,000-lead scale check).
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid5

from psycopg import sql
from psycopg.rows import tuple_row

from engine.postgres import account_directory
from engine.postgres.store import streams_after, streams_after_statement
from engine.runtime import Runtime

NS = UUID("6f1d8a52-52d4-4a3e-9b1a-2a3c4d5e6f70")


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def _scans(cur: Any, explain: Any, params: Any, relation: str) -> list[str]:
    """The plan's node types that read `relation`."""
    row = cur.execute(explain, params).fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return [
        n["Node Type"]
        for n in _plan_nodes(document[0]["Plan"])
        if n.get("Relation Name") == relation
    ]


def _unanalyzed(cur: Any, table: sql.Composable, fill: sql.Composable, params: Any) -> None:
    """Fill `table` with autovacuum off for it: PostgreSQL keeps no statistics of it."""
    cur.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(table))
    cur.execute(fill, params)


def test_stored_streams_are_read_by_index_on_a_never_analyzed_log(runtime: Runtime) -> None:
    recorder: Any = runtime.app.recorder
    schema, table = recorder.datastore.schema, recorder.events_table_name
    events = sql.Identifier(schema, table)
    ids = [uuid5(NS, str(n)) for n in range(20_000)]
    with recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
        fill = sql.SQL(
            "INSERT INTO {} (originator_id, originator_version, topic, state) "
            "SELECT i, v, 'bench:Filler', '\\x00'::bytea "
            "FROM unnest(%s::uuid[]) i CROSS JOIN generate_series(1, 3) v"
        ).format(events)
        _unanalyzed(cur, events, fill, (ids,))
        analyzed = cur.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
            (f'"{schema}"."{table}"',),
        ).fetchone()
        assert analyzed is not None and analyzed[0] <= 0  # no statistics: the planner guesses
        wanted = ids[:500]
        # as the ingest's prepared statement runs after its fifth use: one generic plan, the
        # arrays' lengths unknown to the planner
        text = streams_after_statement(schema, table).as_string(conn)
        text = text.replace("%b", "$1", 1).replace("%b", "$2", 1)
        cur.execute("SET plan_cache_mode = force_generic_plan")
        cur.execute(sql.SQL("PREPARE probe AS ") + sql.SQL(text))  # type: ignore[arg-type]
        explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE probe({}::uuid[], {}::bigint[])")
        scans = _scans(
            cur,
            explain.format(sql.Literal([str(i) for i in wanted]), sql.Literal([1] * len(wanted))),
            None,
            table,
        )
        cur.execute("DEALLOCATE probe")
        cur.execute("RESET plan_cache_mode")
    assert scans and "Seq Scan" not in scans, scans
    streams = streams_after(recorder, {ids[0]: 1, ids[1]: 0, uuid5(NS, "absent"): 0})
    assert streams is not None
    assert [e.originator_version for e in streams[ids[0]]] == [2, 3]
    assert [e.originator_version for e in streams[ids[1]]] == [1, 2, 3]
    assert uuid5(NS, "absent") not in streams


def test_provisional_lookups_read_the_provisional_accounts_only(runtime: Runtime) -> None:
    """A CRM account's update asks which provisional accounts sit on its domains: with
    100,000 CRM accounts that was a scan of the whole directory per update (77 updates/s)."""
    directory: Any = runtime.app.account_directory
    schema = runtime.db.schema
    table = sql.Identifier(schema, account_directory.TABLE)
    crm = [(f"crm-{n}", f"Company {n}", f"company {n}", [f"c{n}.example"]) for n in range(20_000)]
    with directory.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
        fill = sql.SQL(
            "INSERT INTO {} (account_key, name, name_words, domains) "
            "SELECT k, n, w, ARRAY[d] FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::text[]) AS r(k, n, w, d)"
        ).format(table)
        columns = tuple(list(c) for c in zip(*[(k, n, w, d[0]) for k, n, w, d in crm], strict=True))
        _unanalyzed(cur, table, fill, columns)
        cur.execute(
            sql.SQL("INSERT INTO {} (account_key, domains) VALUES (%s, %s), (%s, %s)").format(
                table
            ),
            ("provisional/acme.example", ["acme.example"], "provisional/eu.c7.example", []),
        )
        for claiming in (True, False):
            explain = sql.SQL("EXPLAIN (FORMAT JSON) ") + account_directory.provisional_statement(
                table, claiming=claiming
            )
            params = (["acme.example", "c7.example"],)
            scans = _scans(cur, explain, params, account_directory.TABLE)
            assert scans and "Seq Scan" not in scans, (claiming, scans)
    assert directory.provisional_under(["acme.example", "c7.example"]) == [
        "provisional/acme.example"
    ]
    assert directory.provisional_keys_under(["c7.example"]) == ["provisional/eu.c7.example"]
