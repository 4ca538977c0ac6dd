"""Reports over the read model (SQL written once, for PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql

from engine.analytics.stats import pct
from engine.domain.lifecycle import FUNNEL, RANK
from engine.domain.rules import Sla
from engine.domain.sla import DECISIONS, timer
from engine.postgres.db import Database
from engine.projections import identity

FUNNEL_STAGES = FUNNEL[1:]


#: One row per person: the lead that got furthest (ties: the latest event, then the id).
PEOPLE = """(
    SELECT DISTINCT ON (person_id) person_id, stage, furthest_rank FROM (
        SELECT coalesce(p.person_id, s.lead_id) AS person_id, s.lead_id, s.stage,
               s.furthest_rank, s.last_event_at
        FROM {s}.lead_state s LEFT JOIN {s}.lead_person p USING (lead_id)
    ) members
    ORDER BY person_id, furthest_rank DESC, last_event_at DESC NULLS LAST, lead_id
) people"""


def funnel(db: Database) -> dict[str, Any]:
    """How many leads reached each funnel stage (skips count as reached), conversion between
    consecutive stages, and where leads are now. A person of several leads counts once, where
    its furthest lead stands (docs/identity.md)."""
    table = sql.SQL(PEOPLE).format(s=sql.Identifier(db.schema))
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
        rate = pct(count, previous) if previous else None
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


#: The column each read-model table is cut on, per clock: `recorded` (--as-of, what the engine
#: had stored by T) and `occurred` (--occurred-by, what had happened by T).
CLOCK_COLUMNS = {
    "recorded": {
        "r": "coalesce(r.recorded_at, r.occurred_at)",
        "t": "t.recorded_at",
        "m": "m.recorded_at",
    },
    "occurred": {"r": "r.occurred_at", "t": "t.occurred_at", "m": "m.occurred_at"},
}

#: The timers of each routed lead's latest round, stopped by a fact on any lead of its person
#: (`members`: the people as the links of the same clock make them, docs/identity.md).
SLA_QUERY = """
    WITH rounds AS (
        SELECT DISTINCT ON (r.lead_id) r.lead_id, r.lead_key, r.owner, r.queue,
               r.occurred_at AS routed_at
        FROM {s}.lead_routing r
        WHERE r.outcome = 'routed' AND r.occurred_at <= {at} AND {cut_r}
        ORDER BY r.lead_id, r.version DESC),
    people AS ({people}),
    members AS (
        SELECT k.lead_id, coalesce(o.lead_id, k.lead_id) AS member
        FROM rounds k
        LEFT JOIN people p ON p.lead_id = k.lead_id
        LEFT JOIN people o ON o.person_id = p.person_id)
    SELECT k.lead_key, k.owner, k.queue, k.routed_at,
        least(
            (SELECT min(t.occurred_at) FROM {s}.lead_touchpoints t
             WHERE t.lead_id IN (SELECT member FROM members WHERE members.lead_id = k.lead_id)
               AND t.type = ANY({touch_types})
               AND t.occurred_at >= k.routed_at AND (NOT {owner_only} OR t.rep = k.owner)
               AND {cut_t}),
            (SELECT min(m.occurred_at) FROM {s}.lead_milestones m
             WHERE m.lead_id IN (SELECT member FROM members WHERE members.lead_id = k.lead_id)
               AND m.type = ANY({touch_types})
               AND m.occurred_at >= k.routed_at AND (NOT {owner_only} OR m.actor = k.owner)
               AND {cut_m})),
        (SELECT min(m.occurred_at) FROM {s}.lead_milestones m
         WHERE m.lead_id IN (SELECT member FROM members WHERE members.lead_id = k.lead_id)
           AND m.type = ANY({decisions})
           AND m.occurred_at >= k.routed_at AND {cut_m})
    FROM rounds k
    WHERE {window}
    ORDER BY k.routed_at, k.lead_key"""


def sla(
    db: Database,
    rules: Sla,
    as_of: datetime,
    *,
    clock: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """SLA timers of every routed lead (its latest routing round), evaluated at `as_of`: per
    owner and queue, and the leads breached or at risk. `clock` says what is known at
    `as_of`: "recorded" (what the engine had stored by then), "occurred" (what had happened by
    then, as known now) or None (everything stored now). [start, end) keeps the leads whose
    round was routed in the window. Timers are derived from the facts' times, never stored:
    a lead's own routing, stopped by a sales touch or decision on any lead of its person as
    the links known on the same clock make it (before a merge: two clocks)."""
    cuts = CLOCK_COLUMNS.get(clock or "", {})

    def cut(alias: str) -> sql.Composable:
        if alias not in cuts:
            return sql.SQL("TRUE")
        return sql.SQL(cuts[alias] + " <= {}").format(sql.Literal(as_of))

    window: list[sql.Composable] = [sql.SQL("TRUE")]
    if start is not None:
        window.append(sql.SQL("k.routed_at >= {}").format(sql.Literal(start)))
    if end is not None:
        window.append(sql.SQL("k.routed_at < {}").format(sql.Literal(end)))
    query = sql.SQL(SLA_QUERY).format(
        s=sql.Identifier(db.schema),
        at=sql.Literal(as_of),
        cut_r=cut("r"),
        cut_t=cut("t"),
        cut_m=cut("m"),
        touch_types=sql.Literal(list(rules.first_touch_types)),
        owner_only=sql.Literal(rules.owner_only),
        decisions=sql.Literal(sorted(DECISIONS)),
        window=sql.SQL(" AND ").join(window),
        people=identity.people_sql(
            db.schema,
            as_of if clock == "recorded" else None,
            as_of if clock == "occurred" else None,
        ),
    )
    with db.connect() as conn:
        rows = conn.execute(query).fetchall()
    groups: dict[tuple[str, str], dict[str, int]] = {}
    attention = []
    for key, owner, queue, routed_at, touched, decided in rows:
        timers = (
            timer("first_touch", routed_at, rules.first_touch_hours, touched, as_of, rules),
            timer("decision", routed_at, rules.decision_hours, decided, as_of, rules),
        )
        counts = groups.setdefault((owner, queue), {"leads": 0})
        counts["leads"] += 1
        for t in timers:
            name = f"{t.name}_{t.status}"
            counts[name] = counts.get(name, 0) + 1
            if t.status in ("breached", "at_risk"):
                attention.append(
                    {
                        "lead": key,
                        "owner": owner,
                        "queue": queue,
                        "timer": t.name,
                        "status": t.status,
                        "routed_at": routed_at,
                        "due": t.due,
                        "done_at": t.done_at,
                    }
                )
    statuses = ("met", "at_risk", "breached", "pending")
    by_owner = [
        {
            "owner": owner,
            "queue": queue,
            "leads": c["leads"],
            **{f"first_touch_{s}": c.get(f"first_touch_{s}", 0) for s in statuses},
            **{f"decision_{s}": c.get(f"decision_{s}", 0) for s in statuses},
        }
        for (owner, queue), c in sorted(groups.items())
    ]
    return {"as_of": as_of, "routed_leads": len(rows), "by_owner": by_owner, "attention": attention}


def routing(db: Database) -> list[dict[str, Any]]:
    """Per queue and owner: leads the engine routed, and leads waiting for a rep."""
    state = sql.Identifier(db.schema, "lead_state")
    with db.connect() as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT coalesce(queue, '-'), coalesce(owner, '-'), "
                "count(*) FILTER (WHERE owner_source = 'routing'), "
                "count(*) FILTER (WHERE owner IS NULL AND queue IS NOT NULL), "
                "count(*) FILTER (WHERE owner_source = 'manual') "
                "FROM {} WHERE owner IS NOT NULL OR queue IS NOT NULL "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).format(state)
        ).fetchall()
    return [
        {"queue": q, "owner": o, "routed": r, "waiting": w, "manual": m} for q, o, r, w, m in rows
    ]
