"""What a reporting job may test on the read contract: each view's unique key and never-null
columns, each enumerated column's allowed values, each formatted column's pattern. Declared
from the code's own constants and rendered into docs/read-model.md (`python -m
engine.readvalues docs/read-model.md` rewrites the section; a unit test fails if it drifts, an
integration test runs the checks, parsed from the doc, on generated data)."""

from __future__ import annotations

import sys
import typing
from dataclasses import dataclass
from pathlib import Path

from engine.analytics.attribution import BY, MODELS
from engine.analytics.windows import BYS as WINDOW_BYS
from engine.analytics.windows import VALUES as WINDOW_VALUES
from engine.domain.contract import TOUCH_TYPES
from engine.domain.generator import CHANNELS
from engine.domain.lifecycle import FUNNEL, STAGES
from engine.domain.rules import Attribution, Strategy
from engine.projections.projector import PROJECTIONS
from engine.projections.rows import MILESTONE_TYPES
from engine.stitching.identity_map import KINDS

BEGIN, END = "<!-- readvalues:begin -->", "<!-- readvalues:end -->"


@dataclass(frozen=True)
class Accepted:
    column: str  # view.column
    values: tuple[str, ...]
    closed: bool  # the engine writes nothing else; open: upstream's values (the demo's listed)


def _literal(kind: object) -> tuple[str, ...]:
    return tuple(typing.get_args(kind))


#: A routing round's timer states (lead_sla_rounds, engine/projections/registry.py).
ROUND_STATES = ("met", "breached", "at_risk", "pending", "superseded")

ACCEPTED = (
    Accepted("lead_current.stage", STAGES, True),
    Accepted("lead_current.owner_source", ("routing", "manual"), True),
    Accepted("lead_current.source_channel", CHANNELS, False),
    Accepted("lead_touchpoints.type", tuple(TOUCH_TYPES), True),
    Accepted("lead_touchpoints.channel", CHANNELS, False),
    Accepted("lead_stage_history.from_stage", STAGES, True),
    Accepted("lead_stage_history.to_stage", STAGES[1:], True),
    Accepted("lead_owner_history.outcome", ("routed", "not_routed", "assigned"), True),
    Accepted(
        "lead_owner_history.strategy", (*_literal(Strategy), "account_owner"), True
    ),  # account_owner: the lead's account's owner, before any queue (docs/accounts.md)
    Accepted("account_members.rule", ("explicit", "domain", "name"), True),
    Accepted("lead_milestones.type", tuple(sorted(MILESTONE_TYPES)), True),
    Accepted("campaign_costs.channel", CHANNELS, False),
    Accepted("attribution_credits.model", MODELS, True),
    Accepted("attribution_credits.by", BY, True),
    Accepted("attribution_credits.value", ("conversions", "revenue"), True),
    Accepted(
        "attribution_credits.conversion",
        _literal(Attribution.model_fields["conversion"].annotation),
        True,
    ),
    Accepted("identity_links.kind", KINDS, True),
    Accepted("lead_sla_rounds.strategy", (*_literal(Strategy), "account_owner"), True),
    Accepted("lead_sla_rounds.first_sales_touch_state", ROUND_STATES, True),
    Accepted("lead_sla_rounds.decision_state", ROUND_STATES, True),
    Accepted("attribution_by_window.window_kind", ("all", "quarter", "month"), True),
    Accepted("attribution_by_window.by", WINDOW_BYS, True),
    Accepted("attribution_by_window.value", WINDOW_VALUES, True),
    Accepted(
        "attribution_by_window.conversion",
        _literal(Attribution.model_fields["conversion"].annotation),
        True,
    ),
    Accepted("kpi_funnel.stage", FUNNEL[1:], True),
    Accepted("kpi_account_funnel.stage", FUNNEL[1:], True),
    Accepted("contract_info.projection", tuple(PROJECTIONS), True),
    Accepted("kpi_stage_reached.stage", FUNNEL[1:], True),
)

#: column: (PostgreSQL regular expression, what it means)
PATTERNS = {
    "lead_current.rules_version": (
        r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$",
        "`name@version` of the rules (the primary model), e.g. `default@2026.1`",
    ),
    "lead_stage_history.decision": (
        r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$",
        "`name@version` of the rules whose MQL rule was met, e.g. `default@2026.1`",
    ),
    "lead_scores.model_version": (
        r"^[A-Za-z0-9_.-]+$",
        "the model's `version` as in the rules, without its name, e.g. `2026.1`",
    ),
    "attribution_by_window.window_key": (
        r"^(all|[0-9]{4}-(0[1-9]|1[0-2])|[0-9]{4}-Q[1-4])$",
        "`all`, a month `YYYY-MM` or a quarter `YYYY-Qn` (UTC)",
    ),
    "lead_current.country": (r"^[A-Z]{2}$", "ISO 3166-1 alpha-2"),
    "lead_milestones.currency": (r"^[A-Z]{3}$", "ISO 4217"),
    "campaign_costs.currency": (r"^[A-Z]{3}$", "ISO 4217"),
}

#: view: (unique key, never-null columns)
KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "account_state": (("account_id",), ("account_id", "account_key", "domains")),
    "account_members": (
        ("lead_id",),
        ("lead_id", "lead_key", "account_id", "account_key", "rule", "reason", "rules_version"),
    ),
    "account_scores": (
        ("account_id",),
        (
            "account_id",
            "account_key",
            "fit",
            "engagement",
            "score",
            "members",
            "points",
            "roles_covered",
            "roles_missing",
            "group_engagement",
        ),
    ),
    "account_buying_group": (
        ("account_id", "role"),
        (
            "account_id",
            "role",
            "account_key",
            "required",
            "leads",
            "engaged",
            "covered",
            "best_engagement",
        ),
    ),
    "lead_current": (
        ("lead_id",),
        (
            "lead_id",
            "lead_key",
            "stage",
            "score",
            "fit",
            "engagement",
            "rules_version",
            "touch_count",
            "touch_counts",
            "anomalies",
            "mql_rounds",
            "lead_version",
            "person_id",
        ),
    ),
    "identity_links": (
        ("lead_id", "source", "event_id"),
        (
            "lead_id",
            "kind",
            "other_lead_id",
            "source",
            "event_id",
            "occurred_at",
            "recorded_at",
            "person_id",
        ),
    ),
    "lead_touchpoints": (
        ("lead_id", "source", "event_id"),
        (
            "lead_id",
            "lead_key",
            "event_id",
            "type",
            "channel",
            "occurred_at",
            "recorded_at",
            "source",
            "position",
            "sales_touch",
        ),
    ),
    "lead_stage_history": (
        ("lead_id", "lead_version"),
        (
            "lead_id",
            "lead_key",
            "lead_version",
            "from_stage",
            "to_stage",
            "reason",
            "trigger_event_id",
            "occurred_at",
            "recorded_at",
        ),
    ),
    "lead_owner_history": (
        (),
        ("lead_id", "lead_key", "occurred_at", "outcome", "why", "trigger_event_id"),
    ),
    "lead_milestones": (
        ("lead_id", "source", "event_id"),
        ("lead_id", "lead_key", "event_id", "type", "occurred_at", "recorded_at", "source"),
    ),
    "lead_scores": (
        ("lead_id", "model"),
        (
            "lead_id",
            "lead_key",
            "model",
            "model_version",
            "fit",
            "engagement",
            "score",
            "as_of",
            "scored_at",
        ),
    ),
    "lead_sla": (
        ("lead_id",),
        (
            "lead_id",
            "lead_key",
            "round",
            "owner",
            "queue",
            "routed_at",
            "first_touch_due",
            "decision_due",
            "first_sales_touch_due",
        ),
    ),
    "lead_sla_rounds": (
        ("lead_id", "round"),
        (
            "lead_id",
            "lead_key",
            "round",
            "owner",
            "queue",
            "strategy",
            "why",
            "trigger_event_id",
            "routed_at",
            "latest",
            "first_sales_touch_due",
            "first_sales_touch_at_risk",
            "first_sales_touch_state",
            "decision_due",
            "decision_at_risk",
            "decision_state",
            "state_at",
        ),
    ),
    "attribution_by_window": (
        ("window_key", "by", "value", "conversion", "key"),
        (
            "window_key",
            "window_kind",
            "by",
            "value",
            "conversion",
            "key",
            *MODELS,
            "total",
            "conversions",
            "rules_version",
            "through_position",
            "computed_at",
        ),
    ),
    "campaign_costs": (
        ("campaign", "source", "event_id"),
        (
            "event_id",
            "campaign",
            "channel",
            "amount",
            "currency",
            "period_start",
            "period_end",
            "recorded_at",
            "source",
        ),
    ),
    "attribution_credits": (
        ("model", "by", "value", "conversion", "key"),
        (
            "model",
            "by",
            "value",
            "conversion",
            "key",
            "credit",
            "total",
            "conversions",
            "rules_version",
            "computed_at",
        ),
    ),
    "kpi_stage_reached": (("lead_id", "stage"), ("lead_id", "stage", "reached_at")),
    "kpi_funnel": (("stage",), ("stage", "position", "reached")),
    "kpi_account_funnel": (("stage",), ("stage", "position", "accounts")),
    "contract_info": (
        ("projection",),
        ("contract_version", "projection", "position", "log_head", "lag", "last_projected_at"),
    ),
}


def _codes(values: typing.Iterable[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def markdown() -> str:
    """The section of docs/read-model.md between the markers."""
    lines = [
        BEGIN,
        "### Keys and required columns",
        "Tested as dbt's `unique` (the key's columns together) and `not_null`.",
        "",
        "| view | unique key | never null |",
        "|---|---|---|",
        *(
            f"| `{view}` | {_codes(key) or 'none'} | {_codes(required)} |"
            for view, (key, required) in KEYS.items()
        ),
        "",
        "### Allowed values",
        "Tested as dbt's `accepted_values` (nulls aside). *closed*: the engine writes no other "
        "value; *open*: the value comes from upstream events (any text the event contract "
        "accepts): the list is what the demo generator (`leadengine generate`) sends.",
        "",
        "| column | kind | values |",
        "|---|---|---|",
        *(
            f"| `{a.column}` | {'closed' if a.closed else 'open'} | {_codes(a.values)} |"
            for a in ACCEPTED
        ),
        "",
        "### Formats",
        "Tested as a match of the PostgreSQL regular expression (nulls aside).",
        "",
        "| column | pattern | meaning |",
        "|---|---|---|",
        *(
            f"| `{column}` | `{pattern}` | {meaning} |"
            for column, (pattern, meaning) in PATTERNS.items()
        ),
        END,
    ]
    return "\n".join(lines)


def rewrite(path: Path) -> bool:
    """Put `markdown()` between the markers in `path`; True if the file changed."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + markdown() + tail
    path.write_text(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover - a maintainer's tool
    for name in sys.argv[1:]:
        print(name, "rewritten" if rewrite(Path(name)) else "unchanged")
