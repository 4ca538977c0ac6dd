"""The read model's projections and the tables each one owns, as the projector writes them.

Each table is declared once in engine/projections/registry.py; this module groups them into the
four projections (each with its own position in `projection_tracking`) and derives what the
fold (engine/projections/fold.py) and the writers (engine/projections/bulk.py) need.
"""

from __future__ import annotations

from engine.projections import identity, registry, rows

#: The rules each projector applied, from where in the log (engine/projections/registry.py).
RULES_TABLE = "rules_applied"
#: The projections and the tables each one owns (a rebuild replaces all of a projection's).
PROJECTIONS: dict[str, tuple[str, ...]] = {
    "leads": (
        "lead_state",
        "lead_scores",
        "lead_sla",
        "lead_sla_rounds",
        *registry.ACCOUNT_TABLES,
    ),
    "touchpoints": ("lead_touchpoints", "lead_milestones"),
    "history": ("lead_stage_history", "lead_routing", identity.TABLE, identity.PEOPLE_TABLE),
    "costs": ("campaign_costs",),
}
DESCRIPTIONS = {
    "leads": "each lead's current stage, owner, score per model and SLA timers; accounts",
    "touchpoints": "every touch and sales milestone, as it happened",
    "history": "stage changes with their reasons, routing rounds, identity links and merges",
    "costs": "campaign costs",
}
#: The name the whole read model was tracked under before it was split (migration 3).
LEGACY_NAME = "read_model"


def names(only: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Validate projection names (comma-separated or a list); all of them if none given."""
    if not only:
        return tuple(PROJECTIONS)
    wanted = [n.strip() for n in (only.split(",") if isinstance(only, str) else only)]
    unknown = [n for n in wanted if n not in PROJECTIONS]
    if unknown:
        raise ValueError(
            f"unknown projection {', '.join(map(repr, unknown))}: expected one of "
            + ", ".join(PROJECTIONS)
        )
    return tuple(n for n in PROJECTIONS if n in wanted)


#: Tables whose rows are opinions that change (replaced on conflict); the rest are history.
UPSERTED = frozenset(n for n, t in registry.TABLES.items() if t.upserted and t.projected)
#: Every table the projector writes, in write order: its columns and its key
#: (declared in engine/projections/registry.py).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # identity.PEOPLE_TABLE is folded from the links by `identity.refresh` (the people of a
    # batch's links), never row by row (no batch rows)
    name: (registry.TABLES[name].names, registry.TABLES[name].key)
    for name in registry.PROJECTED
}
#: Where `retracted_at` sits in a stage-history row.
RETRACTED = rows.STAGE_HISTORY_COLUMNS.index("retracted_at")
#: The projection each table belongs to.
TABLE_PROJECTION = {table: name for name, tables in PROJECTIONS.items() for table in tables}
#: The tables that show the lead key: a forgotten lead's rows there get its pseudonym.
KEYED_TABLES = tuple(t for t, (columns, _) in TABLES.items() if "lead_key" in columns)
