"""The identity read model (docs/identity.md): `identity_links`, one row per identity decision
(`Lead.Linked`), and `lead_person`, the people they make, folded as engine/stitching does.

Both belong to the `history` projection. Link rows are history (never changed), written with
the batch that projected their event; `lead_person` (one row per lead of a person of several) is
folded in SQL (`PEOPLE`): in the transaction of every batch that adds a link, for the people of
that batch's links only (`refresh` with `touched`), and whole when a rebuild switches.
`people_sql` cuts the same fold on `recorded_at` for `--as-of`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql

from engine.aggregates.lead import Lead
from engine.postgres.db import Connection
from engine.projections import registry

TABLE = registry.IDENTITY_LINKS.name
COLUMNS = registry.IDENTITY_LINKS.names
KEY = registry.IDENTITY_LINKS.key
#: Both tables as declared once (engine/projections/registry.py); migration 14 runs these.
DDL = registry.IDENTITY_LINKS.ddl() + registry.LEAD_PERSON.ddl()
PEOPLE_TABLE = registry.LEAD_PERSON.name
PEOPLE_COLUMNS = registry.LEAD_PERSON.names

#: People as of a cut on `recorded_at` ({cut}: a condition on the links considered). The
#: joins no later unmerge of the same pair took back; their connected sets; each person's id
#: the smallest member no join points away from (a join points away from its `loser`: the
#: subject, or the other lead when `subject_wins`), else the smallest member (IdentityMap's).
PEOPLE = """
WITH RECURSIVE links AS (
    SELECT * FROM {s}.identity_links WHERE {cut}
), joins AS (
    SELECT j.lead_id AS a, j.other_id AS b,
           CASE WHEN j.subject_wins THEN j.other_id ELSE j.lead_id END AS loser
    FROM links j
    WHERE j.kind <> 'unmerged' AND NOT EXISTS (
        SELECT 1 FROM links u
        WHERE u.kind = 'unmerged'
          AND ((u.lead_id = j.lead_id AND u.other_id = j.other_id)
               OR (u.lead_id = j.other_id AND u.other_id = j.lead_id))
          AND (u.occurred_at, u.source, u.event_id, u.lead_id::text)
              > (j.occurred_at, j.source, j.event_id, j.lead_id::text))
), edges AS (
    SELECT a, b FROM joins UNION SELECT b, a FROM joins
), reach (start, node) AS (
    SELECT a, a FROM edges
    UNION
    SELECT r.start, e.b FROM reach r JOIN edges e ON e.a = r.node
)
SELECT r.start AS lead_id,
       coalesce(
           min(r.node::text) FILTER (WHERE r.node NOT IN (SELECT loser FROM joins)),
           min(r.node::text)
       )::uuid AS person_id,
       count(*)::int AS leads
FROM reach r GROUP BY r.start"""


def create(conn: Connection, schema: str) -> None:
    s = sql.Identifier(schema)
    for statement in DDL:
        conn.execute(sql.SQL(statement).format(s=s))


def refresh(
    cur: Connection | Cursor[Any], schema: str, touched: Collection[UUID] | None = None
) -> None:
    """Bring `lead_person` to the links (in the caller's transaction): all of it (`touched`
    None: a rebuild's switch), or only the people of the leads `touched` names (the two
    ends of each new link). New links join or split only the people their ends were in, so
    those people's leads, folded again over the links among them, are all that can change:
    the same rows as the whole fold (a hypothesis property in tests/integration/
    test_stitching.py), at a cost that follows the batch, not every link ever recorded."""
    table = sql.Identifier(schema, PEOPLE_TABLE)
    if touched is None:
        cur.execute(sql.SQL("DELETE FROM {}").format(table))
        cut: sql.Composable = sql.SQL("true")
    else:
        seeds = sorted(set(touched), key=str)
        if not seeds:
            return
        rows = cur.execute(
            sql.SQL(
                "DELETE FROM {t} WHERE person_id IN "
                "(SELECT person_id FROM {t} WHERE lead_id = ANY(%s)) RETURNING lead_id"
            ).format(t=table),
            (seeds,),
        ).fetchall()
        ids = sorted({*seeds, *(row[0] for row in rows)}, key=str)
        cut = sql.SQL("(lead_id = ANY({ids}) OR other_id = ANY({ids}))").format(
            ids=sql.Literal(ids)
        )
    cur.execute(
        sql.SQL("INSERT INTO {} (lead_id, person_id, leads) ").format(table)
        + sql.SQL(PEOPLE).format(s=sql.Identifier(schema), cut=cut)
    )


def touched_by(link_rows: Iterable[tuple[Any, ...]]) -> set[UUID]:
    """Both ends of each link row (`link_row`): the leads whose people may change."""
    return {end for row in link_rows for end in (row[0], row[4])}


def people_sql(
    schema: str, as_of: datetime | None, occurred_by: datetime | None = None
) -> sql.Composed:
    """`lead_person` as the engine knew it at `as_of` and of the links that had happened by
    `occurred_by` (None: no cut on that clock)."""
    return sql.SQL(PEOPLE).format(s=sql.Identifier(schema), cut=link_cut(as_of, occurred_by))


def link_cut(as_of: datetime | None, occurred_by: datetime | None) -> sql.Composable:
    """The links recorded by `as_of` and happened by `occurred_by`, as a condition."""
    cuts: list[sql.Composable] = [sql.SQL("true")]
    if as_of is not None:
        cuts.append(sql.SQL("recorded_at <= {}").format(sql.Literal(as_of)))
    if occurred_by is not None:
        cuts.append(sql.SQL("occurred_at <= {}").format(sql.Literal(occurred_by)))
    return sql.SQL(" AND ").join(cuts)


def link_row(event: Lead.Linked, position: int) -> tuple[Any, ...]:
    return (
        event.originator_id,
        event.source,
        event.event_id,
        event.relation,
        event.other_id,
        event.by,
        event.reason,
        event.occurred_at,
        event.timestamp,
        position,
        getattr(event, "subject_wins", False),
    )
