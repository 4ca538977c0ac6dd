"""The read-model contract: stable views in `<schema>_read` for reporting jobs, and the
`leadengine_reader` role that may read them and nothing else.

The tables behind the views belong to the engine and may change (columns added, a table
rebuilt); the views' names and columns are the contract, documented in docs/read-model.md.
Views are re-created in one transaction when their definitions change, so readers never see
a half-made contract. They run with their owner's rights: the reader needs no grant on the
engine's tables, and gets none.
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg import sql

from engine.analytics.views import VIEWS as KPI_VIEWS
from engine.application import EVENTS_TABLE
from engine.dependents import qualified, replace_view
from engine.projections.rows import STAGE_AT_COLUMNS, STAGE_COLUMNS

READER_ROLE = "leadengine_reader"

#: The funnel stages' columns, in funnel order (`captured_at` .. `customer_at`).
FUNNEL_AT = STAGE_AT_COLUMNS[: STAGE_COLUMNS.index("customer") + 1]
#: lead_current's stage times. The official definition (docs/read-model.md, "MQL: one
#: definition"): a funnel stage is reached when the lead gets to it or to any later funnel stage
#: (a skip reaches the stages it skips), as kpi_stage_reached, kpi_funnel and the CLI count.
REACHED_AT = tuple(
    f"least({', '.join(FUNNEL_AT[i:])}) AS {column}" if column in FUNNEL_AT[:-1] else column
    for i, column in enumerate(STAGE_AT_COLUMNS)
)

CONTRACT: dict[str, str] = {
    "lead_current": """
    SELECT lead_id, lead_key, stage, owner, owner_source, queue,
           score, fit, engagement, rules_version, best_persona, persona_fit,
           source_channel, source_campaign, first_touch_at, last_touch_at, touch_count,
           touch_counts, company, title, country, industry, employees, seniority,
           """
    + ", ".join(REACHED_AT)
    + """,
           won_amount, won_currency, anomalies, mql_rounds, last_event_at, erased_at,
           version AS lead_version, mql_at AS mql_entered_at, recorded_at,
           coalesce((SELECT p.person_id FROM {s}.lead_person p
                     WHERE p.lead_id = lead_state.lead_id), lead_id) AS person_id
    FROM {s}.lead_state""",
    "identity_links": """
    SELECT i.lead_id, l.lead_key, i.kind, i.other_id AS other_lead_id,
           o.lead_key AS other_lead_key, i.by, i.reason, i.source, i.event_id, i.occurred_at,
           i.recorded_at, coalesce(p.person_id, i.lead_id) AS person_id
    FROM {s}.identity_links i
    LEFT JOIN {s}.lead_state l ON l.lead_id = i.lead_id
    LEFT JOIN {s}.lead_state o ON o.lead_id = i.other_id
    LEFT JOIN {s}.lead_person p ON p.lead_id = i.lead_id""",
    "lead_touchpoints": """
    SELECT lead_id, lead_key, event_id, type, channel, campaign, content, url, rep,
           occurred_at, recorded_at, source
    FROM {s}.lead_touchpoints""",
    "lead_stage_history": """
    SELECT lead_id, lead_key, version AS lead_version, from_stage, to_stage, decision, reason,
           score, trigger_event_id, occurred_at, recorded_at
    FROM {s}.lead_stage_history WHERE retracted_at IS NULL""",
    "lead_owner_history": """
    SELECT lead_id, lead_key, occurred_at, recorded_at,
           CASE outcome WHEN 'routed' THEN 'routed' ELSE 'not_routed' END AS outcome,
           owner, queue, strategy, why, trigger_event_id
    FROM {s}.lead_routing
    UNION ALL
    SELECT lead_id, lead_key, occurred_at, recorded_at, 'assigned', actor, NULL, NULL,
           'owner.assigned upstream', event_id
    FROM {s}.lead_milestones WHERE type = 'owner.assigned'""",
    "lead_milestones": """
    SELECT lead_id, lead_key, event_id, type, actor, reason, amount, currency,
           occurred_at, recorded_at, source
    FROM {s}.lead_milestones""",
    "lead_scores": """
    SELECT c.lead_id, c.lead_key, c.model, c.model_version, c.fit, c.engagement, c.score,
           c.as_of, l.recorded_at
    FROM {s}.lead_scores c LEFT JOIN {s}.lead_state l USING (lead_id)""",
    "lead_sla": """
    SELECT c.lead_id, c.lead_key, c.round, c.owner, c.queue, c.routed_at, c.first_touch_due,
           c.first_touch_at, c.decision_due, c.decided_at, l.recorded_at
    FROM {s}.lead_sla c LEFT JOIN {s}.lead_state l USING (lead_id)""",
    "campaign_costs": """
    SELECT event_id, campaign, channel, amount, currency, period_start, period_end, recorded_at,
           source
    FROM {s}.campaign_costs""",
    "attribution_credits": """
    SELECT model, by, value, conversion, key, credit, share_pct, total, conversions,
           window_from, window_to, as_of, rules_version, computed_at, currency
    FROM {s}.attribution_credits""",
    **{name: "SELECT * FROM {s}." + name for name in KPI_VIEWS},
}

#: Changes whenever a view above changes (a column added, a definition fixed): a reporting job
#: that stores it notices. Read it in `contract_info`.
CONTRACT_VERSION = hashlib.sha256(repr(CONTRACT).encode()).hexdigest()[:16]

#: The log's head for `contract_info`, read with the engine's rights (the reader may not read
#: the event store); 0 before the event store exists (it is made after the migrations).
LOG_HEAD = """
CREATE OR REPLACE FUNCTION {r}.log_head() RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $body$
DECLARE head bigint;
BEGIN
    IF to_regclass({events}) IS NULL THEN RETURN 0; END IF;
    EXECUTE format('SELECT coalesce(max(notification_id), 0) FROM %s', {events}) INTO head;
    RETURN head;
END $body$"""

CONTRACT["contract_info"] = f"""
    SELECT '{CONTRACT_VERSION}'::text AS contract_version, t.name AS projection,
           t.position, h.head AS log_head, greatest(h.head - t.position, 0) AS lag,
           t.updated_at AS last_projected_at
    FROM {{s}}.projection_tracking t CROSS JOIN (SELECT {{r}}.log_head() AS head) h"""

FINGERPRINT = "leadengine read contract " + hashlib.sha256(repr(CONTRACT).encode()).hexdigest()[:16]


def read_schema(schema: str) -> str:
    return f"{schema}_read"


def ensure_contract(conn: Any, schema: str) -> bool:
    """Create the contract views if missing, or replace them in place if changed (columns only
    added at the end, so views built on them in other schemas stay; engine/dependents.py
    refuses a change that would break them); grant them to the reader role.

    Runs inside the caller's transaction. Returns True if it changed anything."""
    read = read_schema(schema)
    row = conn.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{read}.lead_current",)
    ).fetchone()
    if row and row[0] == FINGERPRINT and _all_there(conn, read):
        return False
    s, r = sql.Identifier(schema), sql.Identifier(read)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(r))
    events = sql.Literal(qualified(schema, EVENTS_TABLE))
    conn.execute(sql.SQL(LOG_HEAD).format(r=r, events=events))
    conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {}.log_head() FROM PUBLIC").format(r))
    for name in CONTRACT:
        query = sql.SQL(CONTRACT[name]).format(s=s, r=r)
        replace_view(conn, schema, qualified(read, name), query)
    conn.execute(
        sql.SQL("COMMENT ON VIEW {}.lead_current IS {}").format(r, sql.Literal(FINGERPRINT))
    )
    grant(conn, schema)
    return True


def _all_there(conn: Any, read: str) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.views WHERE table_schema = %s AND "
        "table_name = ANY(%s)",
        (read, list(CONTRACT)),
    ).fetchone()
    return bool(row and row[0] == len(CONTRACT))


def role_exists(conn: Any, role: str = READER_ROLE) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None


def create_reader_role(conn: Any, role: str = READER_ROLE) -> bool:
    """Create the group role (NOLOGIN: give people and jobs their own login roles IN it)."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('leadengine-reader-role'))")
    if role_exists(conn, role):
        return False
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return True


def grant(conn: Any, schema: str, role: str = READER_ROLE) -> None:
    """The reader may use the read schema and select its views; nothing else is granted."""
    if not role_exists(conn, role):
        return
    r, who = sql.Identifier(read_schema(schema)), sql.Identifier(role)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(r, who))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(r, who))
    if conn.execute(
        "SELECT to_regprocedure(%s)", (f"{qualified(read_schema(schema), 'log_head')}()",)
    ).fetchone()[0]:
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}.log_head() TO {}").format(r, who))


def reporting_login_sql(login: str, *, create_login: bool) -> list[sql.Composed]:
    """What gives reporting job `login` the contract to read and a schema of its own (named
    after it, owned by it) to write into: dbt's target. Nothing else: not the engine's schemas,
    not its tables, not `public` (PostgreSQL 15 and later grant no CREATE there)."""
    who, reader = sql.Identifier(login), sql.Identifier(READER_ROLE)
    out = []
    if create_login:
        out.append(sql.SQL("CREATE ROLE {} LOGIN PASSWORD '...'").format(who))
    out += [
        sql.SQL("GRANT {} TO {}").format(reader, who),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(who, who),
    ]
    return out
