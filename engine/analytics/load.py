"""Read journeys and costs from the read model as the engine knew them at `as_of`.

Every read-model row carries `recorded_at` (when the engine stored the fact or decision), so
cutting on it answers "what did we know then" (`--as-of`; a stage move a late fact retracted
after then still counts); cutting on `occurred_at` answers
"what had happened by then" (`--occurred-by`); report windows cut on `occurred_at`. Rows
stream through a server-side cursor, so memory holds journeys, not result sets.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from psycopg import sql

from engine.analytics.journeys import Cost, Dataset, Journey, Milestone, Move, Touchpoint
from engine.domain.lifecycle import RANK
from engine.postgres.db import Database
from engine.projections import identity

_EPOCH = datetime.min.replace(tzinfo=UTC)

QUERIES = {
    "touches": "SELECT lead_key, occurred_at, position, type, channel, campaign, content, rep "
    "FROM {s}.lead_touchpoints",
    "moves": "SELECT lead_key, occurred_at, from_stage, to_stage, reason "
    "FROM {s}.lead_stage_history",
    "milestones": "SELECT lead_key, occurred_at, type, actor, reason, amount, currency "
    "FROM {s}.lead_milestones",
    "routed": "SELECT lead_key, occurred_at FROM {s}.lead_routing WHERE outcome = 'routed'",
    "costs": "SELECT campaign, channel, amount, currency, period_start, period_end "
    "FROM {s}.campaign_costs",
}
ORDER = {
    "touches": "",
    "moves": " ORDER BY lead_key, version",
    "milestones": " ORDER BY lead_key, position",
    "routed": "",
    "costs": " ORDER BY event_id",
}


#: Rows a late fact may take back later (engine/domain/moments.py): kept, stamped `retracted_at`.
RETRACTABLE = {"moves": "(retracted_at IS NULL"}
#: What "happened by T" means per table (costs: the spend periods that had begun by T).
HAPPENED = {"costs": "period_start <= {occurred_by}::date"}


def _query(
    db: Database,
    name: str,
    as_of: datetime | None,
    occurred_by: datetime | None = None,
    *,
    order: bool = True,
    extra: str = "",
) -> sql.Composed:
    base = QUERIES[name]
    if extra:  # one more column, first
        base = base.replace("SELECT ", f"SELECT {extra}, ", 1)
    recorded = "coalesce(recorded_at, occurred_at)" if name == "routed" else "recorded_at"
    cuts = []
    if as_of is not None:
        cuts.append(recorded + " <= {as_of}")
    if name in RETRACTABLE:  # the path as it stood: now, or at T (retracted after T: still on)
        cuts.append(RETRACTABLE[name] + (" OR retracted_at > {as_of})" if as_of else ")"))
    if occurred_by is not None:
        cuts.append(HAPPENED.get(name, "occurred_at <= {occurred_by}"))
    for cut in cuts:
        glue = " AND " if " WHERE " in base else " WHERE "
        base += glue + cut
    return sql.SQL(base + (ORDER[name] if order else "")).format(
        s=sql.Identifier(db.schema),
        as_of=sql.Literal(as_of),
        occurred_by=sql.Literal(occurred_by),
    )


def _rows(
    db: Database, name: str, as_of: datetime | None, occurred_by: datetime | None = None
) -> Iterator[tuple[Any, ...]]:
    with db.connect(autocommit=False) as conn, conn.cursor(name=f"report_{name}") as cur:
        cur.execute(_query(db, name, as_of, occurred_by))
        yield from _chunks(cur, 20_000)


def _chunks(cur: Any, size: int) -> Iterator[Any]:
    """A server-side cursor's rows, fetched `size` at a time (iterating the cursor itself
    costs a method call per row: a third of a streamed report's time)."""
    while rows := cur.fetchmany(size):
        yield from rows


def load(
    db: Database,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> Dataset:
    """All journeys and costs recorded by `as_of` and happened by `occurred_by` (None: no
    cut on that clock)."""
    journeys: dict[str, Journey] = {}

    def of(key: str) -> Journey:
        j = journeys.get(key)
        if j is None:
            j = journeys[key] = Journey(key)
        return j

    touches = _rows(db, "touches", as_of, occurred_by)
    for count, (key, at, pos, type_, channel, campaign, content, rep) in enumerate(touches, 1):
        of(key).touches.append(Touchpoint(at, pos, type_, channel, campaign, content, rep))
        if progress and count % 50_000 == 0:
            progress(count)
    for key, at, from_stage, to_stage, reason in _rows(db, "moves", as_of, occurred_by):
        of(key).moves.append(Move(at, from_stage, to_stage, reason))
    for key, at, type_, actor, reason, amount, currency in _rows(
        db, "milestones", as_of, occurred_by
    ):
        of(key).milestones.append(Milestone(at, type_, actor, reason, amount, currency))
    for key, at in _rows(db, "routed", as_of, occurred_by):
        of(key).routed.append(at)
    costs = load_costs(db, as_of, occurred_by)
    journeys = by_person(journeys, person_keys(db, as_of, occurred_by))
    for j in journeys.values():
        j.sort()
    ordered = [journeys[k] for k in sorted(journeys)]
    return Dataset(ordered, costs, as_of)


def load_costs(
    db: Database, as_of: datetime | None = None, occurred_by: datetime | None = None
) -> list[Cost]:
    """The cost lines recorded by `as_of` whose periods had begun by `occurred_by` (few: one
    per campaign and period, whatever the number of leads)."""
    return [Cost(*row) for row in _rows(db, "costs", as_of, occurred_by)]


def person_keys(
    db: Database, as_of: datetime | None = None, occurred_by: datetime | None = None
) -> dict[str, str]:
    """Each linked or merged lead's key -> its person's key (the person lead's key, or the
    smallest member key while that lead has no row), as the links known by `as_of` and
    happened by `occurred_by` make them (docs/identity.md)."""
    people = identity.people_sql(db.schema, as_of, occurred_by)
    query = sql.SQL(
        "SELECT p.person_id, p.lead_id, s.lead_key FROM ({}) p JOIN {} s ON s.lead_id = p.lead_id"
    ).format(people, sql.Identifier(db.schema, "lead_state"))
    members: dict[Any, list[tuple[Any, str]]] = {}
    with db.connect() as conn:
        for person_id, lead_id, key in conn.execute(query):
            members.setdefault(person_id, []).append((lead_id, key))
    out: dict[str, str] = {}
    for person_id, leads in members.items():
        own = [key for lead_id, key in leads if lead_id == person_id]
        person_key = own[0] if own else min(key for _, key in leads)
        out.update((key, person_key) for _, key in leads)
    return out


def by_person(journeys: dict[str, Journey], keys: dict[str, str]) -> dict[str, Journey]:
    """One journey per person: the union of its leads' touches, moves, milestones and
    routings (each lead's own rows unchanged), under the person's key."""
    if not keys:
        return journeys
    out: dict[str, Journey] = {}
    furthest: dict[str, tuple[int, datetime | None, str]] = {}
    for key, j in journeys.items():
        person = keys.get(key, key)
        into = out.get(person)
        if into is None:
            out[person] = into = Journey(person)
        into.touches += j.touches
        into.moves += j.moves
        into.milestones += j.milestones
        into.routed += j.routed
        if key in keys:
            j.sort()
            last = j.moves[-1] if j.moves else None
            rank = max((RANK.get(m.to_stage, 0) for m in j.moves), default=0)
            mine = (rank, last.at if last else None, last.to_stage if last else "anonymous")
            best = furthest.get(person)
            if best is None or (mine[0], mine[1] or _EPOCH) > (best[0], best[1] or _EPOCH):
                furthest[person] = mine
    for person, (_rank, _at, stage) in furthest.items():
        out[person].stage_now = stage
    return out


#: The column that orders one lead's rows of each table in `stream` (ties in time as `load`).
TIEBREAK = {
    "touches": "position",
    "moves": "version",
    "milestones": "position",
    "routed": "occurred_at",
}
JOURNEY_TABLES = tuple(TIEBREAK)
#: the milestones an attribution path reads: the capture (the lead's creation) and won deals
PATH_MILESTONES = ("lead.captured", "deal.won")


class ReadCount:
    """Touchpoints read so far (`read`), told to `progress` each time 50,000 more were read
    (`tell`): the progress of every streamed reader (`stream`, pathread, kpiread)."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.read = 0
        self._told = 0

    def tell(self) -> None:
        if self.progress and self.read - self._told >= 50_000:
            self.progress(self.read)
            self._told = self.read


def _stream_query(
    db: Database,
    name: str,
    as_of: datetime | None,
    occurred_by: datetime | None,
    people: bool,
    only: bool = False,
    types: tuple[str, ...] | None = None,
) -> sql.Composed:
    """`name`'s rows ordered by person key in code-point order (Python's `sorted`, which
    orders `load`'s journeys), then lead key, time and TIEBREAK (one lead's rows come in the
    order `Journey.sort` leaves them); each row led by the person key and the tie-breaker.
    With `people`, the query takes two text arrays (lead keys, their person keys); with
    `only`, the rows of leads not in them are left out; with `types`, only the rows of those
    types."""
    inner = _query(db, name, as_of, occurred_by, order=False, extra=f"{TIEBREAK[name]} AS tie")
    if types is not None:
        inner = sql.SQL("SELECT * FROM ({}) t WHERE t.type = ANY({})").format(
            inner, sql.Literal(list(types))
        )
    if not people:
        return sql.SQL(
            'SELECT q.lead_key COLLATE "C" AS person, q.* FROM ({}) q '
            "ORDER BY 1, q.occurred_at, q.tie"
        ).format(inner)
    return sql.SQL(
        'SELECT coalesce(p.person, q.lead_key) COLLATE "C" AS person, q.* FROM ({}) q '
        + ("JOIN" if only else "LEFT JOIN")
        + " unnest(%s::text[], %s::text[]) AS p(lead_key, person) "
        'ON p.lead_key = q.lead_key ORDER BY 1, q.lead_key COLLATE "C", q.occurred_at, q.tie'
    ).format(inner)


def stream(
    db: Database,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    itersize: int = 10_000,
    grouped: dict[str, str] | None = None,
    for_paths: bool = False,
) -> Iterator[Journey]:
    """`load`'s journeys (costs aside) one at a time, in the same order and the same as `load`
    makes them: each table read through its own server-side cursor ordered by person key, the
    four merged person by person, so memory holds one journey and the cursors' chunks.

    `grouped` (lead key -> group key, e.g. its account's): one journey per group instead, the
    union of its leads' rows (as `by_person` merges them), leads of no group left out.

    `for_paths`: only what attribution paths read (engine/analytics/paths.py): touches, moves,
    and the milestones in PATH_MILESTONES; no routings (a third fewer rows to fetch and build)."""
    keys = person_keys(db, as_of, occurred_by) if grouped is None else grouped
    only = grouped is not None
    params = (list(keys), list(keys.values())) if keys or only else None
    with db.connect(autocommit=False) as conn:
        groups = []
        for table, name in enumerate(JOURNEY_TABLES):
            if for_paths and name == "routed":
                continue
            types = PATH_MILESTONES if for_paths and name == "milestones" else None
            cur = conn.cursor(name=f"stream_{name}")
            query = _stream_query(db, name, as_of, occurred_by, bool(keys) or only, only, types)
            cur.execute(query, params)
            groups.append(_grouped(_chunks(cur, itersize), table))
        people = set(keys.values())
        count = ReadCount(progress)
        for person, parts in itertools.groupby(heapq.merge(*groups), key=itemgetter(0)):
            if person in people:  # several leads (or one lead of a person): merged as `load`
                leads: dict[str, Journey] = {}
                for _, table, rows in parts:
                    for row in rows:
                        key = row[2]
                        j = leads.get(key)
                        if j is None:
                            j = leads[key] = Journey(key)
                        _add(j, table, row[3:])
                    count.read += len(rows) if table == 0 else 0
                journey = by_person(leads, keys)[person]
                journey.sort()
            else:  # one lead: its rows as they come, in `Journey.sort`'s order already
                journey = Journey(person)
                for _, table, rows in parts:
                    if table == 0:
                        journey.touches = [Touchpoint(*row[3:]) for row in rows]
                        count.read += len(rows)
                    elif table == 1:
                        journey.moves = [Move(*row[3:]) for row in rows]
                    elif table == 2:
                        journey.milestones = [Milestone(*row[3:]) for row in rows]
                    else:
                        journey.routed = [row[3] for row in rows]
            yield journey
            count.tell()


def _grouped(rows: Iterator[Any], table: int) -> Iterator[tuple[str, int, list[Any]]]:
    """(person key, table, that person's rows of the table), person by person."""
    for person, group in itertools.groupby(rows, key=itemgetter(0)):
        yield person, table, list(group)


def _add(j: Journey, table: int, row: tuple[Any, ...]) -> None:
    """One row of JOURNEY_TABLES[table] (without its key) onto the lead's journey."""
    if table == 0:
        j.touches.append(Touchpoint(*row))
    elif table == 1:
        j.moves.append(Move(*row))
    elif table == 2:
        j.milestones.append(Milestone(*row))
    else:
        j.routed.append(row[0])


def count_people(
    db: Database,
    as_of: datetime | None,
    occurred_by: datetime | None,
    keys: dict[str, str],
    excluding: list[str],
) -> int:
    """How many journeys `load` would make (people: `keys` maps a lead key to its person's)
    whose key is not one of `excluding`, counted in PostgreSQL."""
    leads = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT lead_key FROM ({}) r").format(
            _query(db, name, as_of, occurred_by, order=False)
        )
        for name in JOURNEY_TABLES
    )
    query = sql.SQL(
        "SELECT count(DISTINCT coalesce(p.person, q.lead_key)) FROM ({}) q "
        "LEFT JOIN unnest(%s::text[], %s::text[]) AS p(lead_key, person) "
        "ON p.lead_key = q.lead_key "
        "LEFT JOIN unnest(%s::text[]) AS x(key) ON x.key = coalesce(p.person, q.lead_key) "
        "WHERE x.key IS NULL"
    ).format(leads)
    with db.connect() as conn:
        row = conn.execute(query, (list(keys), list(keys.values()), excluding)).fetchone()
    return int(row[0]) if row else 0


def count_touchpoints(db: Database) -> int:
    """Just read every touchpoint row (the benchmark's baseline for `load`)."""
    return sum(1 for _ in _rows(db, "touches", None))
