"""Attribution paths read straight from the read model: one query, streamed in binary, whose
rows are already what a path needs, fed into a `Tally` person by person.

`load.stream` builds every lead's whole journey (an object for each touch, stage move and
milestone) and `PathStream` then cuts a path out of it; most of those objects are thrown away.
Here PostgreSQL does what a path does not need Python for. One row per person (person key in
code-point order, as `load` orders journeys) with touches or stage moves:

- when it first reached the conversion stage, `lead` and `opportunity` (the minimum over its
  leads' current stage moves, skips counted as `Journey.reached_at` counts them), and its first
  `lead.captured`;
- its touches of the types attribution keeps (`exclude_types` left out in SQL, and those from
  the window's end on, which no path holds) as arrays in the order they happened (ties: arrival
  position, then lead key, as `Journey.sort` leaves them): times, and one array per grouping
  asked for (`(none)` for an empty value);
- with `value="revenue"`, its won deals (amounts, currencies, times).

Python cuts each path as `paths._cut` / `_converting` do (the times are sorted: bisections),
builds `Touchpoint`s only for converting paths (the rule-based models read their times), and
gives a path that did not convert to the tally as its key sequences (all Markov and Shapley
read of it). The query is streamed (`Cursor.stream`), not read through a server-side cursor,
so PostgreSQL may sort with parallel workers. The credits are `PathStream`'s over
`load.stream`'s journeys to the last digit: tests/integration/test_streamed_reports.py
compares them on every clock and window, people of several leads included.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg import Connection, sql

from engine.analytics.attribution import Tally
from engine.analytics.journeys import UNKNOWN, Touchpoint
from engine.analytics.load import ReadCount, _query, person_keys
from engine.analytics.paths import Path, PathStream, deals_value
from engine.domain.lifecycle import RANK
from engine.postgres.db import Database

#: the groupings a path is keyed by, in the order their arrays come
_GROUPINGS = ("channel", "campaign", "content")


def reaching(stage: str) -> list[str]:
    """The `to_stage`s of moves that count as reaching `stage` (`Journey.reached_at`): a funnel
    stage is reached by it or any later one (skips), any other stage only by itself."""
    if stage in RANK:
        return [s for s, rank in RANK.items() if rank >= RANK[stage]]
    return [stage]


def person_column(people: bool) -> sql.Composable:
    """A row's person key in code-point order (`load` orders journeys so); with `people`, the
    unnested lead -> person map `people_join` adds decides it."""
    return sql.SQL(
        'coalesce(p.person, q.lead_key) COLLATE "C"' if people else 'q.lead_key COLLATE "C"'
    )


def people_join(people: bool) -> sql.Composable:
    """With `people`: the lead keys and their person keys (two text arrays) joined to `q`."""
    return sql.SQL(
        " LEFT JOIN unnest(%(leads)s::text[], %(people)s::text[]) AS p(lead_key, person) "
        "ON p.lead_key = q.lead_key"
        if people
        else ""
    )


QUERY = """
WITH t AS (
    SELECT person, array_agg(at{order}) AS ats, array_agg(g1{order}) AS g1,
        array_agg(g2{order}) AS g2, array_agg(g3{order}) AS g3
    FROM (SELECT {person} AS person, q.occurred_at AS at, q.tie, q.lead_key COLLATE "C" AS lk,
              {groupings}
          FROM ({touches}) q{join} WHERE q.type <> ALL(%(excluded)s){end}
          ORDER BY 1, 2, 3, 4) s
    GROUP BY person
), m AS (
    SELECT {person} AS person,
        min(q.occurred_at) FILTER (WHERE q.to_stage = ANY(%(stage)s)) AS converted_at,
        min(q.occurred_at) FILTER (WHERE q.to_stage = ANY(%(lead)s)) AS lead_at,
        min(q.occurred_at) FILTER (WHERE q.to_stage = ANY(%(opportunity)s)) AS opportunity_at
    FROM ({moves}) q{join} GROUP BY 1
), c AS (
    SELECT {person} AS person, min(q.occurred_at) AS captured_at
    FROM ({milestones}) q{join} WHERE q.type = 'lead.captured' GROUP BY 1
), d AS (
    SELECT person, array_agg(amount{order}) AS amounts,
        array_agg(currency{order}) AS currencies, array_agg(at{order}) AS won_at
    FROM (SELECT {person} AS person, q.occurred_at AS at, q.tie, q.lead_key COLLATE "C" AS lk,
              q.amount, q.currency
          FROM ({milestones}) q{join} WHERE q.type = 'deal.won' AND {revenue}
          ORDER BY 1, 2, 3, 4) s
    GROUP BY person
)
SELECT person, m.converted_at, m.lead_at, m.opportunity_at, c.captured_at,
    t.ats, t.g1, t.g2, t.g3, d.amounts, d.currencies, d.won_at
FROM t FULL JOIN m USING (person) LEFT JOIN c USING (person) LEFT JOIN d USING (person)
ORDER BY person
"""


def query(
    db: Database,
    builder: PathStream,
    bys: Sequence[str],
    as_of: datetime | None,
    occurred_by: datetime | None,
    people: bool,
    ordered: bool = True,
) -> sql.Composed:
    """The one query (see the module docstring): one row per person with touches or stage
    moves, in person key order. Parameters: `stage`, `lead`, `opportunity` (the `to_stage`s
    reaching each), `excluded` touch types, and with `people` the lead keys and their
    person keys. Each array is aggregated from a subquery sorted as the path orders its rows.
    `ordered` says so to each aggregate as well (`array_agg(x ORDER BY ...)`): PostgreSQL 16
    and later then skip the sort the input already has, and never aggregate such arrays in
    parallel parts (which could join the parts out of order). PostgreSQL 15 sorts again per
    aggregate (twice the query's time), and without it aggregates the sorted subquery's rows
    in their order (its `array_agg` cannot be split in parallel parts): `feed` passes False
    there."""
    person, join = person_column(people), people_join(people)
    grouping = [
        sql.SQL("coalesce(nullif(q.{c}, ''), {u}) AS g{i}").format(
            c=sql.Identifier(c), u=sql.Literal(UNKNOWN), i=sql.SQL(str(i))
        )
        if c in bys
        else sql.SQL("NULL::text AS g{i}").format(i=sql.SQL(str(i)))
        for i, c in enumerate(_GROUPINGS, 1)
    ]
    end: sql.Composable = sql.SQL("")
    if builder.end is not None:  # no path holds a touch from the window's end on
        end = sql.SQL(" AND q.occurred_at < {}").format(sql.Literal(builder.end))
    return sql.SQL(QUERY).format(
        person=person,
        join=join,
        groupings=sql.SQL(", ").join(grouping),
        end=end,
        touches=_query(db, "touches", as_of, occurred_by, order=False, extra="position AS tie"),
        moves=_query(db, "moves", as_of, occurred_by, order=False),
        milestones=_query(
            db, "milestones", as_of, occurred_by, order=False, extra="position AS tie"
        ),
        revenue=sql.SQL("true" if builder.value == "revenue" else "false"),
        order=sql.SQL(" ORDER BY at, tie, lk" if ordered else ""),
    )


def feed(
    db: Database,
    builder: PathStream,
    tally: Tally,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = 2_000,
    ordered: bool | None = None,
) -> None:
    """Every person's path (as `builder.path` cuts it from `load.stream`'s journey) into
    `tally`, read in one pass of one query, streamed (not a server-side cursor: PostgreSQL may
    then use parallel workers for the sorts); `progress` counts the touchpoints read."""
    keys = person_keys(db, as_of, occurred_by)
    params: dict[str, Any] = {
        "stage": reaching(builder.stage),
        "lead": reaching("lead"),
        "opportunity": reaching("opportunity"),
        "excluded": list(builder.cfg.exclude_types),
    }
    if keys:
        params |= {"leads": list(keys), "people": list(keys.values())}
    columns = [_GROUPINGS.index(by) + 6 for by in tally.bys]
    count = ReadCount(progress)
    with db.connect() as conn, conn.cursor(binary=True) as cur:
        q = query(db, builder, tally.bys, as_of, occurred_by, bool(keys), ordered_by(conn, ordered))
        for row in cur.stream(q, params, size=chunk):
            count.read += _one(builder, tally, row, columns)
            count.tell()


def ordered_by(conn: Connection[Any], ordered: bool | None) -> bool:
    """`ordered` as given, else whether the server takes each aggregate's order (PostgreSQL 16
    and later: see `query`)."""
    return conn.info.server_version >= 160000 if ordered is None else ordered


def _one(builder: PathStream, tally: Tally, row: tuple[Any, ...], columns: list[int]) -> int:
    """One person's path into the tally, cut as `paths._cut` and `_converting` cut it (the
    touches come sorted by time: the cuts are bisections). Returns its touches read."""
    person, at, lead_at, opportunity, captured, ats = row[:6]
    ats = ats or ()
    start, end = builder.start, builder.end
    if at is None or (end is not None and at >= end):  # `end`: touches cut in SQL
        lo = 0 if start is None else bisect_left(ats, start)
        if lo < len(ats):
            keys = {by: tuple(row[c][lo:]) for by, c in zip(tally.bys, columns, strict=True)}
            tally.add_unconverted(keys)
        return len(ats)
    if start is not None and at < start:
        return len(ats)
    lookback: timedelta | None = builder.lookback
    lo = 0 if lookback is None else bisect_left(ats, at - lookback)
    hi = bisect_right(ats, at)
    g1, g2, g3 = row[6:9]  # as long as `ats` (NULL for a grouping not asked for)
    path = tuple(  # seq 0: the arrival order has been applied already (the arrays' order)
        Touchpoint(ats[i], 0, "", g1[i] or UNKNOWN, g2[i], g3[i]) for i in range(lo, hi)
    )
    if builder.value == "revenue" and row[9]:
        won = zip(row[9], row[10], row[11], strict=True)
        worth = deals_value(won, builder.exchange, builder.left_out)
    else:
        worth = Decimal(1) if builder.value == "conversions" else Decimal(0)
    tally.add(
        Path(
            person,
            path,
            at,
            worth,
            lead_created_at=captured if captured is not None else lead_at,
            opportunity_at=opportunity if opportunity and opportunity <= at else None,
            closes=builder.stage == "customer",
        )
    )
    return len(ats)
