"""DDL of the read-model tables, derived from their declaration (engine/projections/registry.py):
created idempotently in the engine's schema, columns an older table lacks added in place."""

from __future__ import annotations

from engine.projections.registry import TABLES, ddl

#: Every table's statements, `{s}` for the schema (migration 1 runs them).
STATEMENTS: tuple[str, ...] = ddl()

# Event time (issue 15): a move a late fact took back stays, stamped with when it was retracted.
RETRACTED_AT = (
    "ALTER TABLE {s}.lead_stage_history ADD COLUMN IF NOT EXISTS "
    + TABLES["lead_stage_history"].column("retracted_at").ddl(),
)
