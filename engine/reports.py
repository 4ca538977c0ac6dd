"""Reports over the read model (SQL written once, for PostgreSQL)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from engine.db import Database
from engine.lifecycle import FUNNEL, RANK

FUNNEL_STAGES = FUNNEL[1:]


def funnel(db: Database) -> dict[str, Any]:
    """How many leads reached each funnel stage (skips count as reached), conversion between
    consecutive stages, and where leads are now."""
    table = sql.Identifier(db.schema, "lead_state")
    reached_cols = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE furthest_rank >= {})").format(sql.Literal(RANK[s]))
        for s in FUNNEL_STAGES
    )
    with db.connect() as conn:
        reached_row = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(reached_cols, table)
        ).fetchone()
        now_rows = conn.execute(
            sql.SQL("SELECT stage, count(*) FROM {} GROUP BY stage").format(table)
        ).fetchall()
        total_row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
    reached = dict(zip(FUNNEL_STAGES, reached_row or (), strict=True))
    now = {stage: count for stage, count in now_rows}
    stages = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        count = int(reached.get(stage, 0))
        rate = round(100.0 * count / previous, 1) if previous else None
        stages.append(
            {
                "stage": stage,
                "reached": count,
                "conversion_pct": rate,
                "now": int(now.get(stage, 0)),
            }
        )
        previous = count
    return {
        "leads_total": int(total_row[0]) if total_row else 0,
        "anonymous_now": int(now.get("anonymous", 0)),
        "stages": stages,
        "exits_now": {
            s: int(now.get(s, 0)) for s in ("nurture", "recycled", "disqualified", "lost")
        },
    }
