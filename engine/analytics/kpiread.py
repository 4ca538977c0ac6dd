"""KPI columns read straight from the read model: one query, streamed in binary, one row per
person (person key in code-point order, as `load` orders journeys) whose arrays are the
`kpilead.KpiLead` columns, fed into a `KpiTally` person by person. PostgreSQL sorts the four
tables' rows in one sort (UNION ALL) and aggregates them per person into arrays (moves: time,
stage; milestones: time, type, reason, amount, currency; routings: time); touches (time, type,
key by the report's grouping) come as undecoded arrays (`array_send`), decoded only for a
person whose touches a section reads, with the first touch's key, the latest moment of any
row and the touch count beside them. The e-mail section is a sum over touches, counted by one
more query (`emails`). So Python builds no object per touch for most people.

The order is `load.stream`'s to the tie: touches by time and arrival position (unique); moves
and milestones by time, then, for a person of several leads, the lead in the order
`load.stream` meets it (the first table it has rows in, touches first, then its key), then the
version (moves) or arrival position (milestones); routings by time. The document is
`kpis_of`'s over `load.stream`'s journeys: tests/integration/test_streamed_reports.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import Connection, postgres, sql
from psycopg.pq import Format

from engine.analytics.followup import CALL, EMAIL
from engine.analytics.funnel import SnapshotTally
from engine.analytics.journeys import UNKNOWN
from engine.analytics.kpilead import Decode, KpiLead, first_reached, furthest
from engine.analytics.kpistream import KpiTally
from engine.analytics.load import JOURNEY_TABLES, ReadCount, _query, person_keys
from engine.analytics.pathread import ordered_by, people_join, person_column
from engine.postgres.db import Database

QUERY = """
{ranks}SELECT person, touch_key[1], latest, touches, array_send(touch_at),
    array_send(touch_type), array_send(touch_key), move_at, move_to, milestone_at,
    milestone_type, milestone_reason, milestone_amount, milestone_currency, routed,
    move_rank, move_lead, array_send(call_at), array_send(sales_at)
FROM (
    SELECT person, max(at) AS latest, count(*) FILTER (WHERE tbl = 0) AS touches,
        array_agg(at{order}) FILTER (WHERE tbl = 0) AS touch_at,
        array_agg(a{order}) FILTER (WHERE tbl = 0) AS touch_type,
        array_agg(b{order}) FILTER (WHERE tbl = 0) AS touch_key,
        array_agg(at{order}) FILTER (WHERE tbl = 0 AND a = %(call)s) AS call_at,
        array_agg(at{order}) FILTER (WHERE tbl = 0 AND a = ANY(%(first_touch)s)) AS sales_at,
        array_agg(at{order}) FILTER (WHERE tbl = 1) AS move_at,
        array_agg(a{order}) FILTER (WHERE tbl = 1) AS move_to,
        array_agg(at{order}) FILTER (WHERE tbl = 2) AS milestone_at,
        array_agg(a{order}) FILTER (WHERE tbl = 2) AS milestone_type,
        array_agg(b{order}) FILTER (WHERE tbl = 2) AS milestone_reason,
        array_agg(amount{order}) FILTER (WHERE tbl = 2) AS milestone_amount,
        array_agg(c{order}) FILTER (WHERE tbl = 2) AS milestone_currency,
        array_agg(at{order}) FILTER (WHERE tbl = 3) AS routed,
        {move_leads}
    FROM (
        SELECT {person} AS person, q.occurred_at AS at, 0 AS lr, '' COLLATE "C" AS lk,
            q.tie::bigint AS tie, 0 AS tbl, q.type AS a,
            coalesce(nullif(q.{by}, ''), {unknown}) AS b, NULL AS c, NULL::numeric AS amount
        FROM ({touches}) q{join}
        UNION ALL
        SELECT {person}, q.occurred_at, {rank}, q.lead_key COLLATE "C", q.tie::bigint, 1,
            q.to_stage, NULL, NULL, NULL
        FROM ({moves}) q{join}{rank_join}
        UNION ALL
        SELECT {person}, q.occurred_at, {rank}, q.lead_key COLLATE "C", q.tie::bigint, 2,
            q.type, q.reason, q.currency, q.amount
        FROM ({milestones}) q{join}{rank_join}
        UNION ALL
        SELECT {person}, q.occurred_at, 0, '', 0, 3, NULL, NULL, NULL, NULL
        FROM ({routed}) q{join}
        ORDER BY 1, 2, 3, 4, 5
    ) s
    GROUP BY person
) p
ORDER BY person
"""

#: this connection's queries sort and aggregate: compiling them (JIT) costs more than it
#: saves (about 0.5 s of a 5 s query on the bench's 1M touchpoints)
NO_JIT = "SET jit = off"

#: the e-mail section: touches of the EMAIL types in the window per campaign key and type (a
#: sum over touches, whoever made them)
EMAILS = """
SELECT coalesce(nullif(q.campaign, ''), {unknown}), q.type, count(*)
FROM ({touches}) q WHERE q.type = ANY(%(email)s){window}
GROUP BY 1, 2
"""

#: each lead of a person of several leads: the first table it has rows in (`load.stream`
#: meets a person's leads table by table, touches first, each table's in key order)
RANKS = """WITH ranks AS (
    SELECT lead_key, min(tbl) AS tbl FROM ({tables}) x GROUP BY lead_key
)
"""


def _ranks(db: Database, as_of: datetime | None, occurred_by: datetime | None) -> sql.Composed:
    tables = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT DISTINCT q.lead_key, {i} AS tbl FROM ({rows}) q "
                "WHERE q.lead_key = ANY(%(leads)s)").format(
            i=sql.Literal(i), rows=_query(db, name, as_of, occurred_by, order=False)
        )
        for i, name in enumerate(JOURNEY_TABLES)
    )  # fmt: skip
    return sql.SQL(RANKS).format(tables=tables)


def query(
    db: Database,
    by: str,
    as_of: datetime | None,
    occurred_by: datetime | None,
    people: bool,
    ordered: bool = True,
) -> sql.Composed:
    """The one query (see the module docstring). Parameters: with `people` the lead keys and
    their person keys; then each move's lead comes too (its rank in `load.stream`'s order and
    its key: `kpilead.furthest` needs them). `ordered` as in
    `pathread.query`: each aggregate says its order too (PostgreSQL 16 and later). `by` is
    a touch column (`KpiTally` checked it)."""
    person, join = person_column(people), people_join(people)
    order = sql.SQL(" ORDER BY at, lr, lk, tie" if ordered else "")
    move_leads: sql.Composable = sql.SQL("NULL AS move_rank, NULL AS move_lead")
    rank: sql.Composable = sql.SQL("0")
    ranks: sql.Composable = sql.SQL("")
    rank_join: sql.Composable = sql.SQL("")
    if people:
        rank = sql.SQL("coalesce(k.tbl, 0)")
        ranks = _ranks(db, as_of, occurred_by)
        rank_join = sql.SQL(" LEFT JOIN ranks k ON k.lead_key = q.lead_key")
        move_leads = sql.SQL(
            "array_agg(lr{o}) FILTER (WHERE tbl = 1) AS move_rank, "
            "array_agg(lk{o}) FILTER (WHERE tbl = 1) AS move_lead"
        ).format(o=order)
    return sql.SQL(QUERY).format(
        ranks=ranks,
        person=person,
        join=join,
        rank=rank,
        rank_join=rank_join,
        by=sql.Identifier(by),
        unknown=sql.Literal(UNKNOWN),
        touches=_query(db, "touches", as_of, occurred_by, order=False, extra="position AS tie"),
        moves=_query(db, "moves", as_of, occurred_by, order=False, extra="version AS tie"),
        milestones=_query(
            db, "milestones", as_of, occurred_by, order=False, extra="position AS tie"
        ),
        routed=_query(db, "routed", as_of, occurred_by, order=False),
        order=order,
        move_leads=move_leads,
    )


def emails(
    db: Database,
    as_of: datetime | None,
    occurred_by: datetime | None,
    start: datetime | None,
    end: datetime | None,
) -> sql.Composed:
    """`EMAILS` on the clocks and in [start, end). Parameter: `email` (the EMAIL types)."""
    window = [
        sql.SQL(" AND q.occurred_at {} {}").format(sql.SQL(op), sql.Literal(at))
        for op, at in ((">=", start), ("<", end))
        if at is not None
    ]
    return sql.SQL(EMAILS).format(
        unknown=sql.Literal(UNKNOWN),
        touches=_query(db, "touches", as_of, occurred_by, order=False),
        window=sql.SQL("").join(window),
    )


def _decoders(conn: Connection[Any]) -> list[Decode]:
    """Binary array decoders of `KpiLead`'s undecoded touch columns, in their order."""
    out: list[Decode] = []
    for name in ("timestamptz", "text", "text", "text", "timestamptz", "timestamptz"):
        oid = postgres.types[name].array_oid
        loader = conn.adapters.get_loader(oid, Format.BINARY)
        assert loader is not None  # psycopg's own array types
        out.append(loader(oid, conn).load)
    return out


def _prepare(
    db: Database,
    by: str,
    as_of: datetime | None,
    occurred_by: datetime | None,
    first_touch: Sequence[str] = (),
) -> tuple[dict[str, str], dict[str, Any], Callable[[bool], sql.Composed]]:
    """The person keys, the parameters, and the query by whether aggregates are ordered."""
    keys = person_keys(db, as_of, occurred_by)
    params: dict[str, Any] = {"call": CALL, "first_touch": list(first_touch)}
    if keys:
        params |= {"leads": list(keys), "people": list(keys.values())}
    return keys, params, lambda ordered: query(db, by, as_of, occurred_by, bool(keys), ordered)


def feed(
    db: Database,
    tally: KpiTally,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2_000,
    ordered: bool | None = None,
) -> None:
    """Every person's columns into `tally` (`KpiTally.add_lead`), in one pass of one query,
    streamed (`Cursor.stream`: PostgreSQL may sort with parallel workers), and the e-mail
    counts from one more (`add_email`); `progress` counts the touchpoints read."""
    _, params, make = _prepare(db, tally.by, as_of, occurred_by, tally.first_touch)
    count = ReadCount(progress)
    with db.connect() as conn, conn.cursor(binary=True) as cur:
        cur.execute(NO_JIT)
        tally.count_email = False
        email = emails(db, as_of, occurred_by, tally.start, tally.end)
        for campaign, type_, touches in cur.execute(email, {"email": list(EMAIL)}):
            tally.add_email(campaign, type_, touches)
        decode = _decoders(conn)
        for row in cur.stream(make(ordered_by(conn, ordered)), params, size=chunk):
            lead = KpiLead(
                row[0],
                UNKNOWN if row[1] is None else row[1],
                row[2],
                row[3],
                (row[4] or (), row[5] or (), row[6] or (), (), row[17] or (), row[18] or ()),
                (row[7] or (), row[8] or ()),
                (row[9] or (), row[10] or (), row[11] or (), row[12] or (), row[13] or ()),
                row[14] or (),
                decode,
            )
            tally.add_lead(lead)
            count.read += lead.touches
            count.tell()


def feed_funnel(
    db: Database,
    tally: SnapshotTally,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2_000,
    ordered: bool | None = None,
) -> None:
    """Every person into `tally` (`SnapshotTally.add_stages`) from the same query: the
    stages its moves reached and where it stands (`funnel.current_stage`; a person of several
    leads: `kpilead.furthest`). Its touches are never decoded."""
    keys, params, make = _prepare(db, "channel", as_of, occurred_by)
    people = set(keys.values())
    count = ReadCount(progress)
    with db.connect() as conn, conn.cursor(binary=True) as cur:
        cur.execute(NO_JIT)
        for row in cur.stream(make(ordered_by(conn, ordered)), params, size=chunk):
            move_at, move_to = row[7] or (), row[8] or ()
            if row[0] in people:
                now = furthest(move_at, move_to, row[15] or (), row[16] or ())
            else:
                now = move_to[-1] if move_to else "anonymous"
            tally.add_stages(first_reached(move_at, move_to), now)
            count.read += row[3]
            count.tell()
