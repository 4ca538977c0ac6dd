"""`report duplicates`' query over the duplicate pairs (docs/identity.md#duplicates): SQL here,
the CLI renders what it returns. Ids only: the values matched are never stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from engine.postgres.db import Database
from engine.postgres.duplicates import STATES
from engine.projections import registry

PERIODS = ("day", "week", "month")


def duplicates_report(
    db: Database,
    *,
    period: str = "week",
    as_of: datetime | None = None,
    occurred_by: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Open suggestions (oldest first) and pairs per period, rule and state: the pairs dated in
    [start, end) and by `occurred_by`, recorded by `as_of` (None: no cut)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: expected one of {', '.join(PERIODS)}")
    cuts: list[sql.Composable] = [sql.SQL("true")]
    for column, op, moment in (
        ("recorded_at", "<=", as_of),
        ("suggested_at", "<=", occurred_by),
        ("suggested_at", ">=", start),
        ("suggested_at", "<", end),
    ):
        if moment is not None:
            cuts.append(
                sql.SQL("{} " + op + " {}").format(sql.Identifier(column), sql.Literal(moment))
            )
    where = sql.SQL(" AND ").join(cuts)
    view = registry.VIEWS["duplicate_suggestions"].select()
    source = sql.SQL("(" + view + ") d").format(s=sql.Identifier(db.schema))
    open_rows = sql.SQL(
        "SELECT rule, match, winner_id, loser_id, winner_person_id, loser_person_id, "
        "rules_version, suggested_at FROM {} WHERE state = 'open' AND {} "
        "ORDER BY rule, suggested_at, winner_id, loser_id"
    ).format(source, where)
    per_period = sql.SQL(
        "SELECT date_trunc({p}, suggested_at AT TIME ZONE 'UTC')::date AS period, rule, state, "
        "count(*) FROM {t} WHERE {w} GROUP BY 1, 2, 3 ORDER BY 1, 2"
    ).format(
        p=sql.Literal(period),
        t=sql.Identifier(db.schema, registry.DUPLICATE_SUGGESTIONS.name),
        w=where,
    )
    with db.connect() as conn:
        cur = conn.execute(open_rows)
        names = [d.name for d in cur.description or ()]
        suggestions = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        counts: dict[tuple[Any, str], dict[str, int]] = {}
        for day, rule, state, n in conn.execute(per_period):
            counts.setdefault((day, rule), dict.fromkeys(STATES, 0))[state] = n
    rows = [
        {"period": day.isoformat(), "rule": rule, **by_state}
        for (day, rule), by_state in counts.items()
    ]
    for s in suggestions:
        s["suggested_at"] = s["suggested_at"].isoformat()
        for k in ("winner_id", "loser_id", "winner_person_id", "loser_person_id"):
            s[k] = str(s[k])
    rules: dict[str, int] = {}
    for s in suggestions:
        rules[s["rule"]] = rules.get(s["rule"], 0) + 1
    return {"period": period, "open": rules, "suggestions": suggestions, "by_period": rows}
