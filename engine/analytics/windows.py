"""`attribution_windows`: attribution credits of every model, side by side, per window.

Windows are calendar months and quarters (UTC) and all time (`all`). A conversion belongs to
the window it happened in (`report attribution --from M --to M+1`); a window's credits are
exactly what that command prints for it (the same code computes them), for each grouping in
`BYS` and each value in `VALUES`, the conversion stage the rules name.

`refresh` recomputes only the windows the events since its last run can have changed: the
facts recorded after the last refreshed log position belong to some leads (and their people);
a lead's path and conversion can only move months where it has a touch or a stage move (a move
a late fact took back included), so those months, their quarters and `all` are recomputed, in
one transaction, stamped with the log position they read up to (`through_position`). The rest
is left as it is. Run it on a schedule (docs/reports.md, "Attribution by window"): its cost is
one read of the journeys plus the touched windows' attribution, never every window's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import Cursor, sql

from engine.analytics.attribution import MODELS, Credits
from engine.analytics.journeys import Dataset, Journey
from engine.analytics.load import stream
from engine.analytics.report import AttributionFeed, Window, attribution
from engine.domain.rules import Rules
from engine.postgres.db import Database
from engine.services.application import EVENTS_TABLE

TABLE = "attribution_windows"
#: Groupings and values every window is computed for.
BYS = ("channel", "campaign")
VALUES = ("conversions", "revenue")
#: The projections whose tables attribution reads (its freshness is the slower of the two).
SOURCES = ("touchpoints", "history")
ALL = "all"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """One window: `all`, a month `YYYY-MM` or a quarter `YYYY-Qn`, [start, end) in UTC."""

    key: str
    kind: str
    start: datetime | None
    end: datetime | None


def _month_start(year: int, month: int) -> datetime:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return datetime(year, month, 1, tzinfo=UTC)


def month(year: int, m: int) -> Span:
    return Span(f"{year:04d}-{m:02d}", "month", _month_start(year, m), _month_start(year, m + 1))


def quarter(year: int, m: int) -> Span:
    q = (m - 1) // 3 + 1
    first = 3 * (q - 1) + 1
    return Span(
        f"{year:04d}-Q{q}", "quarter", _month_start(year, first), _month_start(year, first + 3)
    )


def spans_of(months: Iterable[tuple[int, int]]) -> list[Span]:
    """`all`, and each (year, month)'s month and quarter, in key order."""
    out = {Span(ALL, ALL, None, None)}
    for y, m in months:
        out.add(month(y, m))
        out.add(quarter(y, m))
    return sorted(out)


@dataclass(frozen=True, slots=True)
class Refreshed:
    windows: list[str]  # the window keys recomputed
    rows: int
    through_position: int
    full: bool


def window_rows(
    results: list[Credits], span: Span, through: int, rules: Rules
) -> list[tuple[Any, ...]]:
    """The rows of one window, grouping and value: one per key, a credit column per model (a
    model that gave the key nothing: 0 in its quantum)."""
    if not results or not results[0].conversions:
        return []
    first = results[0]
    now = datetime.now(UTC)
    keys = sorted({k for r in results for k in r.credits})
    by_model = {r.model: r for r in results}
    return [
        (
            span.key,
            first.by,
            first.value,
            first.conversion,
            key,
            span.kind,
            span.start,
            span.end,
            *(by_model[m].credits.get(key, by_model[m].zero) for m in MODELS),
            first.total,
            first.conversions,
            first.currency,
            rules.ref,
            through,
            now,
        )
        for key in keys
    ]


def compute(ds: Dataset, rules: Rules, span: Span, through: int) -> list[tuple[Any, ...]]:
    """Every (grouping, value) of one window, as `report attribution --model all` gives them."""
    out: list[tuple[Any, ...]] = []
    for by in BYS:
        for value in VALUES:
            results = attribution(ds, rules, Window(span.start, span.end), by=by, value=value)
            out += window_rows(results, span, through, rules)
    return out


def compute_of(
    journeys: Iterable[Journey], rules: Rules, spans: Sequence[Span], through: int
) -> list[tuple[Any, ...]]:
    """`compute` of every span over journeys taken one at a time in key order (streamed lead
    by lead): the same rows in the same order, holding per-key sums per span and value (and
    one number per converting path for Shapley), never the journeys. One pass feeds every
    span: a journey's path is cut once per span and value, as `compute` cuts it."""
    feeds = [
        [AttributionFeed(rules, Window(span.start, span.end), bys=BYS, value=value)
         for value in VALUES]
        for span in spans
    ]  # fmt: skip
    adds = [feed.add for per_span in feeds for feed in per_span]
    for j in journeys:
        for add in adds:
            add(j)
    out: list[tuple[Any, ...]] = []
    for span, per_span in zip(spans, feeds, strict=True):
        results = [feed.results() for feed in per_span]
        for by in BYS:
            for of_value in results:
                out += window_rows(of_value[by], span, through, rules)
    return out


def _through(cur: Cursor[Any], schema: str) -> int:
    row = cur.execute(
        sql.SQL("SELECT min(position), count(*) FROM {} WHERE name = ANY(%s)").format(
            sql.Identifier(schema, "projection_tracking")
        ),
        (list(SOURCES),),
    ).fetchone()
    return int(row[0]) if row and row[1] == len(SOURCES) else 0


def _last(cur: Cursor[Any], schema: str, rules: Rules) -> int | None:
    """The position the last refresh read up to under these rules (None: never, or other rules)."""
    row = cur.execute(
        sql.SQL("SELECT max(through_position), bool_and(rules_version = %s) FROM {} ").format(
            sql.Identifier(schema, TABLE)
        ),
        (rules.ref,),
    ).fetchone()
    if row is None or row[0] is None or not row[1]:
        return None
    return int(row[0])


#: Months (UTC) where the given leads, and the other leads of their people, have a touch or a
#: stage move (retracted moves included: the conversion may have been there before).
MONTHS = """
WITH leads AS (
    SELECT unnest(%(ids)s::uuid[]) AS lead_id
    UNION SELECT p2.lead_id FROM {s}.lead_person p1 JOIN {s}.lead_person p2
        ON p2.person_id = p1.person_id WHERE p1.lead_id = ANY(%(ids)s::uuid[])
), at AS (
    SELECT occurred_at FROM {s}.lead_touchpoints WHERE lead_id IN (SELECT lead_id FROM leads)
    UNION ALL
    SELECT occurred_at FROM {s}.lead_stage_history WHERE lead_id IN (SELECT lead_id FROM leads)
)
SELECT DISTINCT extract(year FROM occurred_at AT TIME ZONE 'UTC')::int,
       extract(month FROM occurred_at AT TIME ZONE 'UTC')::int
FROM at"""

ALL_MONTHS = """
SELECT DISTINCT extract(year FROM occurred_at AT TIME ZONE 'UTC')::int,
       extract(month FROM occurred_at AT TIME ZONE 'UTC')::int
FROM (SELECT occurred_at FROM {s}.lead_touchpoints
      UNION ALL SELECT occurred_at FROM {s}.lead_stage_history) t"""


def touched(db: Database, rules: Rules, *, full: bool = False) -> tuple[list[Span], int, bool]:
    """The windows to recompute, the position they will be read up to, and whether every
    window is (first run, other rules, or `full`)."""
    s = sql.Identifier(db.schema)
    with db.connect() as conn, conn.cursor() as cur:
        through = _through(cur, db.schema)
        last = None if full else _last(cur, db.schema, rules)
        if last is None:
            months = cur.execute(sql.SQL(ALL_MONTHS).format(s=s)).fetchall()
            return spans_of((int(y), int(m)) for y, m in months), through, True
        if through <= last:
            return [], through, False
        ids = [
            r[0]
            for r in cur.execute(
                sql.SQL(
                    "SELECT DISTINCT originator_id FROM {} "
                    "WHERE notification_id > %s AND notification_id <= %s"
                ).format(sql.Identifier(db.schema, EVENTS_TABLE)),
                (last, through),
            )
        ]
        if not ids:
            return [], through, False
        months = cur.execute(sql.SQL(MONTHS).format(s=s), {"ids": ids}).fetchall()
    return spans_of((int(y), int(m)) for y, m in months), through, False


def refresh(
    db: Database,
    rules: Rules,
    *,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
    windows: Callable[[int, int], None] | None = None,
) -> Refreshed:
    """Recompute the windows touched since the last refresh (every window when `full`, on the
    first run or under other rules) and replace their rows in one transaction. `progress`
    counts touchpoints read, `windows` (done, of) windows computed: every window is computed
    in the one pass over the journeys, so it is called once, when the pass ends."""
    spans, through, everything = touched(db, rules, full=full)
    if not spans:
        return Refreshed([], 0, through, False)
    # one pass over the journeys streamed lead by lead feeds every window: memory holds per-key
    # sums per window, not the journeys
    journeys = stream(db, None, progress=progress, for_paths=True)
    rows = compute_of(journeys, rules, spans, through)
    if windows is not None:
        windows(len(spans), len(spans))
    table = sql.Identifier(db.schema, TABLE)
    columns = sql.SQL(", ").join(
        sql.Identifier(c)
        for c in (
            "window_key", "by", "value", "conversion", "key", "window_kind", "window_from",
            "window_to", *MODELS, "total", "conversions", "currency", "rules_version",
            "through_position", "computed_at",
        )
    )  # fmt: skip
    with db.connect() as conn, conn.transaction(), conn.cursor() as cur:
        if everything:
            cur.execute(sql.SQL("DELETE FROM {}").format(table))
        else:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE window_key = ANY(%s)").format(table),
                ([s.key for s in spans],),
            )
        # the windows left as they are read up to `through` too: nothing since touched them
        cur.execute(sql.SQL("UPDATE {} SET through_position = %s").format(table), (through,))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(table, columns)) as copy:
            for row in rows:
                copy.write_row(row)
    return Refreshed([s.key for s in spans], len(rows), through, everything)
