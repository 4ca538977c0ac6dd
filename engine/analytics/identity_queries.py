"""`report identity` over the read model: identity decisions per period and kind, and the
people the links make (docs/identity.md). SQL here; the CLI only renders the document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from psycopg import sql

from engine.postgres.db import Database
from engine.projections import identity
from engine.stitching.identity_map import KINDS

PERIODS = ("day", "week", "month")


def identity_report(
    db: Database,
    *,
    as_of: datetime | None = None,
    occurred_by: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    period: str = "week",
) -> dict[str, Any]:
    """Identity decisions per period and kind (happened in [start, end), recorded by as_of,
    happened by occurred_by), and the people the links so cut make."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: expected one of {', '.join(PERIODS)}")
    cuts: list[sql.Composable] = [identity.link_cut(as_of, occurred_by)]
    if start is not None:
        cuts.append(sql.SQL("occurred_at >= {}").format(sql.Literal(start)))
    if end is not None:
        cuts.append(sql.SQL("occurred_at < {}").format(sql.Literal(end)))
    table = sql.Identifier(db.schema, identity.TABLE)
    per_period = sql.SQL(
        "SELECT date_trunc({p}, occurred_at AT TIME ZONE 'UTC')::date AS period, kind, count(*) "
        "FROM {t} WHERE {cut} GROUP BY 1, 2 ORDER BY 1, 2"
    ).format(p=sql.Literal(period), t=table, cut=sql.SQL(" AND ").join(cuts))
    people = sql.SQL(
        "SELECT count(DISTINCT person_id), count(*), coalesce(max(leads), 0) FROM ({}) p"
    ).format(identity.people_sql(db.schema, as_of, occurred_by))
    with db.connect() as conn:
        counts: dict[date, dict[str, int]] = {}
        for day, kind, n in conn.execute(per_period):
            counts.setdefault(day, dict.fromkeys(KINDS, 0))[kind] = n
        persons, leads, largest = conn.execute(people).fetchone() or (0, 0, 0)
    rows = [{"period": day.isoformat(), **by_kind} for day, by_kind in counts.items()]
    totals = {k: sum(by_kind[k] for by_kind in counts.values()) for k in KINDS}
    return {
        "period": period,
        "as_of": as_of,
        "occurred_by": occurred_by,
        "totals": totals,
        "people": {"joined": persons, "leads_in_them": leads, "largest": largest},
        "by_period": rows,
    }
