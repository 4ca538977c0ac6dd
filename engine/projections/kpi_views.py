"""KPI views for reporting jobs: the same numbers as `report kpis` without a window or as-of
(all time, as of now). Documented column by column in docs/reports.md."""

from __future__ import annotations

import hashlib

from psycopg import sql

from engine.postgres.db import Connection
from engine.postgres.dependents import qualified, replace_view
from engine.projections.registry import RANKS_SQL

#: The funnel's stages and ranks (lifecycle.RANK) as SQL rows `r(stage, rank)`.
RANKS = RANKS_SQL

#: First moment each lead reached each funnel stage (a skip reaches the stages it skips).
REACHED = f"""
    SELECT h.lead_id, h.lead_key, r.stage, r.rank, min(h.occurred_at) AS reached_at
    FROM {{s}}.lead_stage_history h
    JOIN {RANKS.replace("AS r(", "AS t(")} ON t.stage = h.to_stage
    JOIN {RANKS} ON r.rank <= t.rank
    WHERE h.retracted_at IS NULL
    GROUP BY h.lead_id, h.lead_key, r.stage, r.rank"""

#: First moment each person reached each funnel stage (its leads' earliest).
PERSON_REACHED = """person_reached AS (
        SELECT coalesce(p.person_id, k.lead_id) AS person_id, k.stage, k.rank,
               min(k.reached_at) AS reached_at
        FROM {s}.kpi_stage_reached k LEFT JOIN {s}.lead_person p USING (lead_id)
        GROUP BY 1, 2, 3)"""
#: Each person's source: the first touch of its leads' (the lead touched first).
PERSON_SOURCE = """person_source AS (
        SELECT DISTINCT ON (1) coalesce(p.person_id, s.lead_id) AS person_id,
               s.source_channel, s.source_campaign
        FROM {s}.lead_state s LEFT JOIN {s}.lead_person p USING (lead_id)
        ORDER BY 1, s.first_touch_at NULLS LAST, s.lead_key)"""

VIEWS: dict[str, str] = {
    "kpi_stage_reached": REACHED,
    "kpi_funnel": f"""
    WITH counts AS (
        SELECT k.stage, count(DISTINCT coalesce(p.person_id, k.lead_id)) AS reached
        FROM {{s}}.kpi_stage_reached k LEFT JOIN {{s}}.lead_person p USING (lead_id)
        GROUP BY k.stage)
    SELECT r.stage, r.rank AS position, coalesce(c.reached, 0) AS reached,
           round(100.0 * coalesce(c.reached, 0)
                 / nullif(lag(coalesce(c.reached, 0)) OVER (ORDER BY r.rank), 0), 1)
             AS conversion_pct
    FROM {RANKS} LEFT JOIN counts c USING (stage)""",
    "kpi_account_funnel": f"""
    WITH reached AS (
        SELECT m.account_id, k.stage, min(k.reached_at) AS reached_at
        FROM {{s}}.kpi_stage_reached k JOIN {{s}}.account_members m USING (lead_id)
        WHERE m.account_id IS NOT NULL
        GROUP BY m.account_id, k.stage),
    counts AS (
        SELECT stage, count(*) AS accounts, min(reached_at) AS first_reached_at
        FROM reached GROUP BY stage)
    SELECT r.stage, r.rank AS position, coalesce(c.accounts, 0) AS accounts,
           round(100.0 * coalesce(c.accounts, 0)
                 / nullif(lag(coalesce(c.accounts, 0)) OVER (ORDER BY r.rank), 0), 1)
             AS conversion_pct,
           c.first_reached_at
    FROM {RANKS} LEFT JOIN counts c USING (stage)""",
    "kpi_time_in_stage": """
    WITH cohort AS (
        SELECT DISTINCT coalesce(p.person_id, k.lead_id) AS person_id
        FROM {s}.kpi_stage_reached k LEFT JOIN {s}.lead_person p USING (lead_id)),
    moves AS (
        SELECT coalesce(p.person_id, h.lead_id) AS person_id, h.lead_key, h.version,
               h.to_stage, h.occurred_at
        FROM {s}.lead_stage_history h LEFT JOIN {s}.lead_person p USING (lead_id)
        WHERE h.retracted_at IS NULL),
    stays AS (
        SELECT m.to_stage AS stage,
               extract(epoch FROM lead(m.occurred_at) OVER w - m.occurred_at) / 86400.0 AS days
        FROM moves m JOIN cohort USING (person_id)
        WINDOW w AS (PARTITION BY m.person_id ORDER BY m.occurred_at, m.lead_key, m.version))
    SELECT stage, count(*) AS stays,
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY days)::numeric, 2) AS median_days,
           round(percentile_cont(0.9) WITHIN GROUP (ORDER BY days)::numeric, 2) AS p90_days
    FROM stays WHERE days IS NOT NULL GROUP BY stage""",
    "kpi_sales_cycle": f"""
    WITH {PERSON_REACHED},
    c AS (
        SELECT extract(epoch FROM w.reached_at - l.reached_at) / 86400.0 AS days
        FROM person_reached l
        JOIN person_reached w ON w.person_id = l.person_id AND w.stage = 'customer'
        WHERE l.stage = 'lead')
    SELECT count(*) AS customers, round(avg(days)::numeric, 2) AS average_days,
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY days)::numeric, 2) AS median_days,
           round(min(days)::numeric, 2) AS shortest_days,
           round(max(days)::numeric, 2) AS longest_days
    FROM c""",
    "kpi_lead_flow": f"""
    WITH {PERSON_REACHED}, {PERSON_SOURCE}
    SELECT to_char(k.reached_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
           (date_trunc('week', k.reached_at AT TIME ZONE 'UTC'))::date AS week,
           coalesce(s.source_channel, '(none)') AS source_channel,
           coalesce(s.source_campaign, '(none)') AS source_campaign,
           k.stage, k.rank AS position, count(*) AS leads
    FROM person_reached k JOIN person_source s USING (person_id)
    GROUP BY 1, 2, 3, 4, 5, 6""",
    "kpi_email": """
    WITH c AS (
        SELECT coalesce(campaign, '(none)') AS campaign,
               count(*) FILTER (WHERE type = 'touch.email_sent') AS sent,
               count(*) FILTER (WHERE type = 'touch.email_opened') AS opened,
               count(*) FILTER (WHERE type = 'touch.email_clicked') AS clicked,
               count(*) FILTER (WHERE type = 'touch.email_bounced') AS bounced,
               count(*) FILTER (WHERE type = 'touch.unsubscribed') AS unsubscribed
        FROM {s}.lead_touchpoints
        WHERE type IN ('touch.email_sent', 'touch.email_opened', 'touch.email_clicked',
                       'touch.email_bounced', 'touch.unsubscribed')
        GROUP BY 1)
    SELECT campaign, sent, opened, clicked, bounced, unsubscribed, sent - bounced AS delivered,
           round(100.0 * opened / nullif(sent - bounced, 0), 1) AS open_rate_pct,
           round(100.0 * clicked / nullif(sent - bounced, 0), 1) AS click_rate_pct,
           round(100.0 * clicked / nullif(opened, 0), 1) AS click_to_open_pct,
           round(100.0 * bounced / nullif(sent, 0), 1) AS bounce_rate_pct,
           round(100.0 * unsubscribed / nullif(sent - bounced, 0), 1) AS unsubscribe_rate_pct
    FROM c""",
    "kpi_cost_per_stage": f"""
    WITH {PERSON_SOURCE},
    cost AS (
        SELECT channel, currency, sum(amount) AS cost FROM {{s}}.campaign_costs GROUP BY 1, 2),
    furthest AS (
        SELECT coalesce(p.person_id, s.lead_id) AS person_id,
               max(s.furthest_rank) AS furthest_rank
        FROM {{s}}.lead_state s LEFT JOIN {{s}}.lead_person p USING (lead_id) GROUP BY 1),
    leads AS (
        SELECT coalesce(s.source_channel, '(none)') AS channel,
               count(*) FILTER (WHERE furthest_rank >= 1) AS leads,
               count(*) FILTER (WHERE furthest_rank >= 2) AS mqls,
               count(*) FILTER (WHERE furthest_rank >= 4) AS sqls,
               count(*) FILTER (WHERE furthest_rank >= 6) AS customers
        FROM furthest f JOIN person_source s USING (person_id) GROUP BY 1),
    revenue AS (
        SELECT coalesce(s.source_channel, '(none)') AS channel, m.currency,
               sum(m.amount) AS revenue
        FROM {{s}}.lead_milestones m LEFT JOIN {{s}}.lead_person p USING (lead_id)
        JOIN person_source s ON s.person_id = coalesce(p.person_id, m.lead_id)
        WHERE m.type = 'deal.won' GROUP BY 1, 2),
    money AS (
        SELECT channel, currency, coalesce(cost, 0) AS cost, coalesce(revenue, 0) AS revenue
        FROM cost FULL JOIN revenue USING (channel, currency))
    SELECT channel, currency, round(coalesce(cost, 0), 2) AS cost,
           coalesce(leads, 0) AS leads, coalesce(mqls, 0) AS mqls,
           coalesce(sqls, 0) AS sqls, coalesce(customers, 0) AS customers,
           round(coalesce(cost, 0) / nullif(leads, 0), 2) AS cost_per_lead,
           round(coalesce(cost, 0) / nullif(mqls, 0), 2) AS cost_per_mql,
           round(coalesce(cost, 0) / nullif(sqls, 0), 2) AS cost_per_sql,
           round(coalesce(cost, 0) / nullif(customers, 0), 2) AS cost_per_customer,
           coalesce(revenue, 0) AS revenue,
           round(coalesce(revenue, 0) / nullif(customers, 0), 2) AS revenue_per_customer
    FROM money FULL JOIN leads USING (channel)""",
}


FINGERPRINT = "leadengine views " + hashlib.sha256(repr(VIEWS).encode()).hexdigest()[:16]


def missing(conn: Connection, qualified: str) -> bool:
    """True if no relation is called `qualified` (schema.name)."""
    row = conn.execute("SELECT to_regclass(%s)", (qualified,)).fetchone()
    return bool(row and row[0] is None)


def create_views(conn: Connection, schema_name: str) -> None:
    """Create the views, or replace them in place when their definitions changed (columns only
    added at the end: the read contract's copies, and any view a reporting team built on
    them, stay); otherwise touch nothing, so readers' queries never wait on a lock taken at
    every start. A change PostgreSQL cannot make in place is refused while objects outside the
    engine depend on the view (engine/postgres/dependents.py). Runs in the caller's transaction."""
    schema = sql.Identifier(schema_name)
    row = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{schema_name}.kpi_funnel",)
    ).fetchone()
    if (
        row
        and row[0] == FINGERPRINT
        and not any(missing(conn, f"{schema_name}.{name}") for name in VIEWS)
    ):
        return
    for name in VIEWS:  # in dependency order
        replace_view(
            conn, schema_name, qualified(schema_name, name), sql.SQL(VIEWS[name]).format(s=schema)
        )
    conn.execute(
        sql.SQL("COMMENT ON VIEW {}.kpi_funnel IS {}").format(schema, sql.Literal(FINGERPRINT))
    )
