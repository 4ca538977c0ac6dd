"""DDL of the read-model tables; created idempotently in the engine's schema."""

from __future__ import annotations

from psycopg import sql

from engine.analytics.views import create_views
from engine.db import Database
from engine.projections import identity
from engine.readmodel import ensure_contract

STATEMENTS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS {s}.projection_tracking (
        name text PRIMARY KEY,
        position bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_state (
        lead_id uuid PRIMARY KEY,
        lead_key text NOT NULL,
        stage text NOT NULL,
        furthest_rank int NOT NULL,
        owner text,
        fit numeric(6,2) NOT NULL,
        engagement numeric(6,2) NOT NULL,
        score numeric(6,2) NOT NULL,
        rules_version text NOT NULL,
        source_channel text,
        source_campaign text,
        first_touch_at timestamptz,
        last_touch_at timestamptz,
        touch_count int NOT NULL,
        touch_counts jsonb NOT NULL,
        anomalies int NOT NULL,
        mql_rounds int NOT NULL,
        company text,
        title text,
        country text,
        industry text,
        employees int,
        seniority text,
        captured_at timestamptz,
        mql_at timestamptz,
        sal_at timestamptz,
        sql_at timestamptz,
        opportunity_at timestamptz,
        customer_at timestamptz,
        nurture_at timestamptz,
        recycled_at timestamptz,
        disqualified_at timestamptz,
        lost_at timestamptz,
        won_amount numeric(14,2),
        won_currency text,
        last_event_at timestamptz,
        version int NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lead_state_stage_idx ON {s}.lead_state (stage)",
    "CREATE INDEX IF NOT EXISTS lead_state_key_idx ON {s}.lead_state (lead_key)",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_touchpoints (
        lead_id uuid NOT NULL,
        event_id text NOT NULL,
        lead_key text NOT NULL,
        type text NOT NULL,
        channel text NOT NULL,
        campaign text,
        content text,
        url text,
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL,
        position bigint NOT NULL,
        PRIMARY KEY (lead_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS lead_touchpoints_time_idx ON {s}.lead_touchpoints (occurred_at)",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_stage_history (
        lead_id uuid NOT NULL,
        version int NOT NULL,
        lead_key text NOT NULL,
        from_stage text NOT NULL,
        to_stage text NOT NULL,
        reason text NOT NULL,
        trigger_event_id text NOT NULL,
        decision text,
        score numeric(6,2),
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL,
        PRIMARY KEY (lead_id, version)
    )""",
    """
    CREATE TABLE IF NOT EXISTS {s}.campaign_costs (
        event_id text PRIMARY KEY,
        campaign text NOT NULL,
        channel text NOT NULL,
        amount numeric(14,2) NOT NULL,
        currency text NOT NULL,
        period_start date NOT NULL,
        period_end date NOT NULL,
        recorded_at timestamptz NOT NULL
    )""",
)

# Added after the first release: columns are added in place, so older databases upgrade.
STATEMENTS += (
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS owner_source text",
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS queue text",
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS best_persona text",
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS persona_fit numeric(6,2)",
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS erased_at timestamptz",
    "ALTER TABLE {s}.lead_state ADD COLUMN IF NOT EXISTS recorded_at timestamptz",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_scores (
        lead_id uuid NOT NULL,
        model text NOT NULL,
        lead_key text NOT NULL,
        model_version text NOT NULL,
        fit numeric(6,2) NOT NULL,
        engagement numeric(6,2) NOT NULL,
        score numeric(6,2) NOT NULL,
        as_of timestamptz NOT NULL,
        PRIMARY KEY (lead_id, model)
    )""",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_routing (
        lead_id uuid NOT NULL,
        version int NOT NULL,
        lead_key text NOT NULL,
        outcome text NOT NULL,
        owner text,
        queue text,
        strategy text,
        why text NOT NULL,
        trigger_event_id text NOT NULL,
        occurred_at timestamptz NOT NULL,
        PRIMARY KEY (lead_id, version)
    )""",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_sla (
        lead_id uuid PRIMARY KEY,
        lead_key text NOT NULL,
        round int NOT NULL,
        owner text NOT NULL,
        queue text NOT NULL,
        routed_at timestamptz NOT NULL,
        first_touch_due timestamptz NOT NULL,
        first_touch_at timestamptz,
        decision_due timestamptz NOT NULL,
        decided_at timestamptz
    )""",
)

# Touchpoint contribution and KPIs (issue 5): who made a touch, when a decision was recorded,
# and the sales milestones (capture, owner, accept/reject, opportunity, deals) with amounts.
STATEMENTS += (
    "ALTER TABLE {s}.lead_touchpoints ADD COLUMN IF NOT EXISTS rep text",
    "ALTER TABLE {s}.lead_routing ADD COLUMN IF NOT EXISTS recorded_at timestamptz",
    """
    CREATE TABLE IF NOT EXISTS {s}.lead_milestones (
        lead_id uuid NOT NULL,
        event_id text NOT NULL,
        lead_key text NOT NULL,
        type text NOT NULL,
        actor text,
        reason text,
        amount numeric(14,2),
        currency text,
        occurred_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL,
        position bigint NOT NULL,
        PRIMARY KEY (lead_id, event_id)
    )""",
    "CREATE INDEX IF NOT EXISTS lead_milestones_type_idx ON {s}.lead_milestones (type)",
    "CREATE INDEX IF NOT EXISTS lead_stage_history_lead_idx ON {s}.lead_stage_history (lead_key)",
    """
    CREATE TABLE IF NOT EXISTS {s}.attribution_credits (
        model text NOT NULL,
        by text NOT NULL,
        value text NOT NULL,
        conversion text NOT NULL,
        key text NOT NULL,
        credit numeric(18,4) NOT NULL,
        share_pct numeric(7,2) NOT NULL,
        total numeric(18,4) NOT NULL,
        conversions int NOT NULL,
        window_from timestamptz,
        window_to timestamptz,
        as_of timestamptz,
        rules_version text NOT NULL,
        computed_at timestamptz NOT NULL,
        currency text,
        PRIMARY KEY (model, by, value, conversion, key)
    )""",
)


# Event time (issue 15): a move a late fact took back stays, stamped with when it was retracted.
RETRACTED_AT = (
    "ALTER TABLE {s}.lead_stage_history ADD COLUMN IF NOT EXISTS retracted_at timestamptz",
)
STATEMENTS += RETRACTED_AT
# Identity (issue 20): links, merges, unmerges and the people they make (migration 14).
STATEMENTS += identity.DDL


def create_tables(db: Database) -> None:
    schema = sql.Identifier(db.schema)
    with db.connect() as conn, conn.transaction():
        for statement in STATEMENTS:
            conn.execute(sql.SQL(statement).format(s=schema))
        create_views(conn, db.schema)
        ensure_contract(conn, db.schema)
