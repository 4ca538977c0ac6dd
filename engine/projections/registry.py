"""Every read-model table and every contract view, declared once.

A `Table` names its columns in their physical order (type, nullability, default, one-line
meaning), its key, its indexes, and whether its rows are opinions replaced on conflict
(`upserted`) or history kept as written. From it come:

- the DDL (`ddl`: `CREATE TABLE IF NOT EXISTS` with every column, then `ADD COLUMN IF NOT
  EXISTS` for each, so an older table gets what it lacks, then the indexes),
- the projector's column lists, keys, upserts and COPY columns (`projector.TABLES`,
  `UPSERTED`; `rows.*_COLUMNS`: the row functions there build tuples in this order),
- the `COMMENT ON` of each table and column (`table_comments`).

A `View` is a contract view in `<schema>_read` (engine/readmodel.py): its columns in order,
each an expression over the table it shows (by default the table's column of that name, with
that column's type and meaning). From it come the view's SQL (`select`), its `COMMENT ON`s,
and the column tables of docs/read-model.md and docs/reports.md (`python -m
engine.projections.registry docs/read-model.md docs/reports.md` rewrites them; a unit test fails
if they drift, an integration test reads the comments back from PostgreSQL).

Adding a read-model column: one `Column` here (at the end of its table; its value at the same
place in the row function in rows.py), one `Out` at the end of the view that shows it (views
only ever gain columns at the end), then the command above, and a migration that runs its
table's `ddl()` (as migration 13 does for `rules_applied`; migration 1's DDL is frozen history,
engine/projections/tables.py): tests/integration/test_table_declaration.py fails until the
migrations make exactly what is declared. Views and comments follow by themselves
(engine/readmodel.py: a fingerprint of these declarations).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from psycopg import sql
from pydantic import BaseModel

from engine.domain.contract import TOUCH_TYPES
from engine.domain.lifecycle import FUNNEL, RANK, STAGES
from engine.domain.rules import ATTRIBUTION_MODELS, BusinessHours, Combine, MqlRule, Sla

#: lead_state's stage columns, in lifecycle order (every stage but `anonymous`)
STAGE_COLUMNS = STAGES[1:]
#: lead_state's column for when each of STAGE_COLUMNS was first reached (`lead`: captured_at)
STAGE_AT_COLUMNS = tuple("captured_at" if s == "lead" else f"{s}_at" for s in STAGE_COLUMNS)
#: The funnel stages' columns, in funnel order (`captured_at` .. `customer_at`).
FUNNEL_AT = STAGE_AT_COLUMNS[: STAGE_COLUMNS.index(FUNNEL[-1]) + 1]
#: The funnel's ranks as SQL rows `(stage, rank)` (lifecycle.RANK, `anonymous` aside).
RANKS_SQL = (
    "(VALUES "
    + ", ".join(f"('{stage}', {rank})" for stage, rank in RANK.items() if rank > 0)
    + ") AS r(stage, rank)"
)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # PostgreSQL type as in the DDL
    meaning: str
    null: bool = True
    default: str | None = None  # SQL expression

    def ddl(self) -> str:
        out = f"{self.name} {self.type}"
        if not self.null:
            out += " NOT NULL"
        if self.default is not None:
            out += f" DEFAULT {self.default}"
        return out


def c(name: str, type_: str, meaning: str, *, default: str | None = None) -> Column:
    """A nullable column."""
    return Column(name, type_, meaning, True, default)


def nn(name: str, type_: str, meaning: str, *, default: str | None = None) -> Column:
    """A NOT NULL column."""
    return Column(name, type_, meaning, False, default)


@dataclass(frozen=True)
class Table:
    name: str
    meaning: str  # the grain: what one row is
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    upserted: bool = False  # rows are opinions replaced on conflict; else history, kept
    projected: bool = True  # written by the projector (projector.TABLES)
    indexes: tuple[tuple[str, str], ...] = ()  # (name, column)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(col.name for col in self.columns)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    def ddl(self) -> tuple[str, ...]:
        """Statements (with `{s}` for the schema) that make the table as declared, or add
        to an older one the columns and indexes it lacks. Types and keys of existing columns
        are changed by migrations (engine/postgres/migrations.py), not here."""
        body = ",\n    ".join(
            [*(col.ddl() for col in self.columns), f"PRIMARY KEY ({', '.join(self.key)})"]
        )
        out = [f"CREATE TABLE IF NOT EXISTS {{s}}.{self.name} (\n    {body}\n)"]
        out += [
            f"ALTER TABLE {{s}}.{self.name} ADD COLUMN IF NOT EXISTS {col.ddl()}"
            for col in self.columns
            if col.name not in self.key
        ]
        out += [
            f"CREATE INDEX IF NOT EXISTS {name} ON {{s}}.{self.name} ({column})"
            for name, column in self.indexes
        ]
        return tuple(out)


LEAD_ID = nn(
    "lead_id",
    "uuid",
    "the lead aggregate's id (a keyed hash of the key; uuid5 on schemas made before migration 7)",
)
LEAD_KEY = nn(
    "lead_key",
    "text",
    "the lead's key upstream (CloudEvent `subject`); `erased-<12 hex of lead_id>` once forgotten",
)
SOURCE = nn(
    "source",
    "text",
    "the CloudEvent `source`: an event is (`source`, `event_id`), so two sources may share an id",
    default="''",
)
OCCURRED = nn(
    "occurred_at", "timestamptz", "when it happened (happened clock: the CloudEvent `time`)"
)
RECORDED = nn("recorded_at", "timestamptz", "when the engine stored it (recorded clock)")
POSITION = nn(
    "position",
    "bigint",
    "the event's notification id in the engine's log: the "
    "order the engine recorded events in (recorded clock)",
)


def _stage_at(stage: str, column: str) -> Column:
    return c(column, "timestamptz", f"first time the lead entered stage `{stage}` itself")


LEAD_STATE = Table(
    "lead_state",
    "One row per lead: its current stage, owner, score and profile.",
    (
        LEAD_ID,
        LEAD_KEY,
        nn(
            "stage",
            "text",
            "current stage (see [allowed values](#allowed-values)); "
            "`anonymous` until the lead is captured (below)",
        ),
        nn(
            "furthest_rank",
            "int",
            "rank of the furthest funnel stage the lead reached "
            "(`lifecycle.RANK`: 0 `anonymous` .. 6 `customer`)",
        ),
        c("owner", "text", "current owner (rep id), null if none"),
        nn("fit", "numeric(6,2)", "0-100, fit part of the score (before weighting)"),
        nn("engagement", "numeric(6,2)", "0-100, engagement part (with decay, before weighting)"),
        nn(
            "score",
            "numeric(6,2)",
            "0-100: fit x `combine.fit_weight` + engagement x "
            "`combine.engagement_weight` (the rules' weights, adding up to 1; 0.5 and 0.5 in "
            "the shipped rules), under the primary scoring model, as of the lead's latest "
            "fact",
        ),
        nn(
            "rules_version",
            "text",
            "`name@version` of the rules that computed the score, e.g. `default@2026.1`",
        ),
        c(
            "source_channel",
            "text",
            "channel of the lead's first touch ([values](#allowed-values)), null if it has none",
        ),
        c("source_campaign", "text", "campaign of the lead's first touch"),
        c("first_touch_at", "timestamptz", "first touch (marketing or sales, any type)"),
        c("last_touch_at", "timestamptz", "latest touch"),
        nn("touch_count", "int", "touches so far"),
        nn("touch_counts", "jsonb", 'touches per type, e.g. `{"touch.page_viewed": 4}`'),
        nn(
            "anomalies",
            "int",
            "facts that made no sense in the stage they found (kept, stage untouched)",
        ),
        nn("mql_rounds", "int", "times the lead became MQL"),
        c("company", "text", "company (firmographic, not personal)"),
        c("title", "text", "job title"),
        c("country", "text", "ISO 3166-1 alpha-2"),
        c("industry", "text", "industry"),
        c("employees", "int", "company size"),
        c("seniority", "text", "seniority"),
        *(_stage_at(s, col) for s, col in zip(STAGE_COLUMNS, STAGE_AT_COLUMNS, strict=True)),
        c(
            "won_amount",
            "numeric(32,2)",
            "sum of the won deals' amounts when they are all in "
            "one currency; null when none, or when the lead won deals in several currencies "
            "(never a sum across currencies: each deal is in `lead_milestones`)",
        ),
        c("won_currency", "text", "that one currency (ISO 4217); null when none or several"),
        c("last_event_at", "timestamptz", "when the lead's latest fact happened"),
        nn("version", "int", "the lead aggregate's version this row reflects"),
        c(
            "owner_source",
            "text",
            "`routing` (the engine routed it) or `manual` (upstream `owner.assigned`)",
        ),
        c("queue", "text", "routing queue of the latest routing"),
        c("best_persona", "text", "the persona the profile fits best (null if none qualifies)"),
        c("persona_fit", "numeric(6,2)", "that persona's fit score"),
        c(
            "erased_at",
            "timestamptz",
            "when its personal data was forgotten (`leadengine forget`), else null",
        ),
        c(
            "recorded_at",
            "timestamptz",
            "when the engine recorded the lead's latest event, "
            "the one this row reflects (recorded clock; `last_event_at` is when it happened); "
            "null for rows projected before migration 11 until the lead changes or "
            "`projections rebuild leads`",
        ),
    ),
    ("lead_id",),
    upserted=True,
    indexes=(("lead_state_stage_idx", "stage"), ("lead_state_key_idx", "lead_key")),
)

TOUCHPOINTS = Table(
    "lead_touchpoints",
    "One row per touch (micro-conversion).",
    (
        LEAD_ID,
        nn("event_id", "text", "the CloudEvent id of the touch"),
        LEAD_KEY,
        nn(
            "type",
            "text",
            "one of the 14 touch types listed under [allowed values](#allowed-values)",
        ),
        nn(
            "channel",
            "text",
            "marketing channel as sent upstream; `sales` for sales touches "
            "(calls, meetings) in the demo data ([values](#allowed-values))",
        ),
        c("campaign", "text", "campaign"),
        c("content", "text", "content / creative"),
        c("url", "text", "landing URL"),
        OCCURRED,
        RECORDED,
        POSITION,
        c("rep", "text", "the rep, for sales touches (calls, meetings)"),
        SOURCE,
    ),
    ("lead_id", "source", "event_id"),
    indexes=(("lead_touchpoints_time_idx", "occurred_at"),),
)

STAGE_HISTORY = Table(
    "lead_stage_history",
    "One row per move of the lead's path, with the reason and the event that caused it; a "
    "move a late fact took back stays, stamped `retracted_at`.",
    (
        LEAD_ID,
        nn(
            "version",
            "int",
            "the lead's version at the change (the order the engine recorded it in)",
        ),
        LEAD_KEY,
        nn("from_stage", "text", "stage before; `anonymous` for the capture (the move to `lead`)"),
        nn("to_stage", "text", "stage after"),
        nn("reason", "text", "why, in words (the rule and score for MQL)"),
        nn("trigger_event_id", "text", "the CloudEvent that caused it"),
        c(
            "decision",
            "text",
            "the rules version (`name@version`) whose MQL rule the score "
            "met, null for moves caused by a fact",
        ),
        c("score", "numeric(6,2)", "the score that met the MQL rule (MQL only)"),
        nn("occurred_at", "timestamptz", "when the change happened"),
        nn("recorded_at", "timestamptz", "when the engine recorded it"),
        c(
            "retracted_at",
            "timestamptz",
            "when a late fact took the move back (recorded clock); null on the current path",
        ),
    ),
    ("lead_id", "version"),
    indexes=(("lead_stage_history_lead_idx", "lead_key"),),
)

COSTS = Table(
    "campaign_costs",
    "One row per recorded cost line (`campaign.cost_recorded`).",
    (
        nn("event_id", "text", "the CloudEvent id"),
        nn("campaign", "text", "campaign"),
        nn("channel", "text", "channel"),
        nn("amount", "numeric(17,2)", "cost"),
        nn("currency", "text", "ISO 4217"),
        nn("period_start", "date", "first day the cost covers"),
        nn("period_end", "date", "last day the cost covers"),
        nn("recorded_at", "timestamptz", "when recorded"),
        SOURCE,
    ),
    ("campaign", "source", "event_id"),
)

SCORES = Table(
    "lead_scores",
    "One row per lead and scoring model (the primary model and every other one in the rules).",
    (
        LEAD_ID,
        nn("model", "text", "scoring model name"),
        LEAD_KEY,
        nn(
            "model_version",
            "text",
            "the model's `version` as in the rules, without its name, e.g. `2026.1`",
        ),
        nn("fit", "numeric(6,2)", "fit part"),
        nn("engagement", "numeric(6,2)", "engagement part"),
        nn("score", "numeric(6,2)", "0-100, the model's weighted total (as `lead_current.score`)"),
        nn("as_of", "timestamptz", "the moment scored (the lead's latest fact)"),
    ),
    ("lead_id", "model"),
    upserted=True,
)

ROUTING = Table(
    "lead_routing",
    "One row per routing attempt of the engine: the owner it chose, or why it found nobody.",
    (
        LEAD_ID,
        nn("version", "int", "the lead's version at the routing"),
        LEAD_KEY,
        nn("outcome", "text", "`routed` or `failed`"),
        c("owner", "text", "the new owner (null when routing failed)"),
        c("queue", "text", "routing queue"),
        c(
            "strategy",
            "text",
            "routing strategy: `round_robin`, `weighted_round_robin` or "
            "`least_loaded`; null when routing failed",
        ),
        nn("why", "text", "the engine's reason (who was skipped and why)"),
        nn("trigger_event_id", "text", "the CloudEvent that caused it"),
        nn("occurred_at", "timestamptz", "when"),
        c(
            "recorded_at",
            "timestamptz",
            "when recorded (null for rows projected before this column existed)",
        ),
    ),
    ("lead_id", "version"),
)

SLA = Table(
    "lead_sla",
    "The SLA timers of each routed lead's latest routing round: the lead's own routing, "
    "stopped by a sales touch or decision on any lead of its person (docs/identity.md).",
    (
        LEAD_ID,
        LEAD_KEY,
        nn("round", "int", "routing round (1 = first routing)"),
        nn("owner", "text", "rep the lead was routed to"),
        nn("queue", "text", "routing queue"),
        nn("routed_at", "timestamptz", "when routed"),
        nn("first_touch_due", "timestamptz", "first sales touch due by (business hours)"),
        c(
            "first_touch_at",
            "timestamptz",
            "first sales touch (a type in the rules' "
            "`sla.first_touch_types`, by the owner) after routing, on any lead of the "
            "lead's person; null if none yet",
        ),
        nn("decision_due", "timestamptz", "accept/reject due by"),
        c(
            "decided_at",
            "timestamptz",
            "accept/reject on any lead of the lead's person, null if none yet",
        ),
    ),
    ("lead_id",),
    upserted=True,
)

SLA_ROUNDS = Table(
    "lead_sla_rounds",
    "One row per routing round of a lead (every engine routing, in the order the engine "
    "routed): its owner, why, and the SLA timers of that round.",
    (
        LEAD_ID,
        nn(
            "round",
            "int",
            "routing round: 1 for the lead's first routing, one more for each routing after it",
        ),
        LEAD_KEY,
        nn("owner", "text", "rep the lead was routed to in this round"),
        nn("queue", "text", "routing queue"),
        nn(
            "strategy",
            "text",
            "routing strategy: `round_robin`, `weighted_round_robin`, `least_loaded` or "
            "`account_owner`",
        ),
        nn("why", "text", "the engine's reason for this owner (who was skipped and why)"),
        nn("trigger_event_id", "text", "the CloudEvent whose fact made the engine route"),
        nn("routed_at", "timestamptz", "when routed (happened clock)"),
        c(
            "ended_at",
            "timestamptz",
            "when the next round routed the lead again (happened clock); null for the latest round",
        ),
        nn(
            "first_touch_due",
            "timestamptz",
            "first sales touch due by: `sla.first_touch_hours` business hours after "
            "`routed_at` (happened clock)",
        ),
        nn(
            "first_touch_at_risk",
            "timestamptz",
            "when the first-touch timer turns at risk: `sla.at_risk_after` of its "
            "allowance in business hours after `routed_at`",
        ),
        c(
            "first_touch_at",
            "timestamptz",
            "the round's first sales touch: a type in the rules' `sla.first_touch_types`, "
            "by the round's owner when `sla.owner_only`, at or after `routed_at` and (an "
            "earlier round) before `ended_at`, on any lead of the lead's person; null if none",
        ),
        nn("decision_due", "timestamptz", "accept/reject due by (business hours)"),
        nn(
            "decision_at_risk",
            "timestamptz",
            "when the decision timer turns at risk (business hours)",
        ),
        c(
            "decided_at",
            "timestamptz",
            "the round's first accept, reject, qualify or disqualify, at or after `routed_at` "
            "and (an earlier round) before `ended_at`, on any lead of the lead's person; null "
            "if none",
        ),
    ),
    ("lead_id", "round"),
    upserted=True,
)

MILESTONES = Table(
    "lead_milestones",
    "Sales facts that are not touches: capture, owner assignment, accept/reject, "
    "qualify/disqualify, nurture, opportunity, won, lost.",
    (
        LEAD_ID,
        nn("event_id", "text", "the CloudEvent id"),
        LEAD_KEY,
        nn(
            "type",
            "text",
            "`lead.captured`, `owner.assigned`, `sales.accepted`, "
            "`sales.rejected`, `sales.qualified`, `sales.disqualified`, "
            "`lead.nurture_enrolled`, `opportunity.opened`, `deal.won`, `deal.lost`",
        ),
        c("actor", "text", "the rep or owner named"),
        c("reason", "text", "the sales reason or nurture program"),
        c("amount", "numeric(17,2)", "opportunity or deal amount"),
        c("currency", "text", "ISO 4217"),
        nn("occurred_at", "timestamptz", "when it happened"),
        nn("recorded_at", "timestamptz", "when recorded"),
        POSITION,
        SOURCE,
    ),
    ("lead_id", "source", "event_id"),
    indexes=(("lead_milestones_type_idx", "type"),),
)

IDENTITY_LINKS = Table(
    "identity_links",
    "One row per identity decision (`Lead.Linked`): a key linked to, merged into or unmerged "
    "from another lead (docs/identity.md).",
    (
        LEAD_ID,
        SOURCE,
        nn("event_id", "text", "the CloudEvent id of the identity fact"),
        nn("kind", "text", "`linked`, `merged` or `unmerged`"),
        nn("other_id", "uuid", "the other lead's id (its key is personal: it stays sealed)"),
        c("by", "text", "who decided it upstream"),
        c("reason", "text", "why, as upstream said"),
        OCCURRED,
        RECORDED,
        POSITION,
        nn(
            "subject_wins",
            "boolean",
            "true: `lead_id` won the merge and `other_id` is the duplicate (an engine merge "
            "recorded on the older key when it arrived after the younger, migration 23)",
            default="false",
        ),
    ),
    ("lead_id", "source", "event_id"),
    indexes=(("identity_links_other_idx", "other_id"),),
)

LEAD_PERSON = Table(
    "lead_person",
    "One row per lead of a person of several leads: folded again, for the people of its links "
    "only, in every batch that adds a link (leads alone are not listed).",
    (
        LEAD_ID,
        nn(
            "person_id",
            "uuid",
            "the person's id: its merge winner or link target (docs/identity.md)",
        ),
        nn("leads", "int", "how many leads the person has"),
    ),
    ("lead_id",),
)

DUPLICATE_SUGGESTIONS = Table(
    "duplicate_suggestions",
    "One row per pair of leads a duplicate rule (`identity.duplicates`) found carrying the same "
    "normalised e-mail or phone: written at ingest (docs/identity.md#duplicates). Ids only.",
    (
        nn("rule", "text", "the duplicate rule's name"),
        nn("match", "text", "`email` or `phone`: the kind of value (never the value)"),
        nn("action", "text", "`suggest` or `merge`, as the rule said"),
        nn("winner_id", "uuid", "the older lead (earliest first seen, then id)"),
        nn("loser_id", "uuid", "the younger lead: the duplicate"),
        nn("rules_version", "text", "`name@version` of the rules that decided"),
        nn(
            "suggested_at",
            "timestamptz",
            "when, in event time, the value had two keys: the younger key's first seen",
        ),
        nn("recorded_at", "timestamptz", "when the engine recorded it", default="now()"),
        nn(
            "state",
            "text",
            "`open` (a suggestion), `merged` (by the rule, or an upstream lead.merged of the "
            "pair), `unmerged` (a lead.unmerged "
            "took the pair apart), `superseded` (an older lead of the same value came later), "
            "`dismissed` (`leadengine duplicates dismiss`: two people, never suggested again)",
        ),
    ),
    ("rule", "winner_id", "loser_id"),
    projected=False,
    indexes=(("duplicate_suggestions_loser_idx", "loser_id"),),
)

CREDITS = Table(
    "attribution_credits",
    "Written by `leadengine report attribution --save`; one row per model, grouping and key.",
    (
        nn("model", "text", "attribution model"),
        nn("by", "text", "`channel`, `campaign` or `content`"),
        nn("value", "text", "`conversions` or `revenue`"),
        nn("conversion", "text", "the stage that counted as converted"),
        nn(
            "key",
            "text",
            "the channel / campaign / content credited (`(no touchpoint)` for "
            "conversions without one)",
        ),
        nn("credit", "numeric(32,4)", "conversions or revenue credited"),
        nn("share_pct", "numeric(7,2)", "credit / total"),
        nn(
            "total",
            "numeric(32,4)",
            "conversions or revenue in all (the credits add up to it exactly)",
        ),
        nn("conversions", "int", "conversions counted"),
        c("window_from", "timestamptz", "`--from`"),
        c("window_to", "timestamptz", "`--to`"),
        c("as_of", "timestamptz", "`--as-of`"),
        nn("rules_version", "text", "rules used"),
        nn("computed_at", "timestamptz", "when saved"),
        c(
            "currency",
            "text",
            "ISO 4217 code of `credit` and `total` when `value` is "
            "`revenue` (null for conversions); a run replaces the model's rows whatever their "
            "currency",
        ),
    ),
    ("model", "by", "value", "conversion", "key"),
    projected=False,
)

#: attribution_windows' columns of credit, one per model, side by side
WINDOW_MODELS = ATTRIBUTION_MODELS

WINDOW_CREDITS = Table(
    "attribution_windows",
    "One row per attribution window, grouping, value and key, the credit of every model side "
    "by side; `leadengine projections refresh-attribution` recomputes the windows the events "
    "since its last run touched (docs/reports.md, 'Attribution by window').",
    (
        nn(
            "window_key",
            "text",
            "`all` (all time), a calendar month `YYYY-MM` or a quarter `YYYY-Qn` (UTC)",
        ),
        nn("by", "text", "`channel` or `campaign`"),
        nn("value", "text", "`conversions` or `revenue`"),
        nn(
            "conversion",
            "text",
            "the stage that counted as converted (the rules' `attribution.conversion`)",
        ),
        nn(
            "key",
            "text",
            "the channel or campaign credited (`(no touchpoint)` for conversions without one)",
        ),
        nn("window_kind", "text", "`all`, `quarter` or `month`"),
        c(
            "window_from",
            "timestamptz",
            "first moment of the window (UTC midnight), null for `all`: the conversions that "
            "happened (happened clock) from it",
        ),
        c(
            "window_to",
            "timestamptz",
            "first moment after the window, null for `all`: conversions before it",
        ),
        *(
            nn(
                m,
                "numeric(32,4)",
                f"credit of the `{m}` model: the window's `total` shared out (its credits over "
                "every key of the window, grouping and value add up to `total` exactly)",
            )
            for m in WINDOW_MODELS
        ),
        nn("total", "numeric(32,4)", "conversions or revenue in the window"),
        nn("conversions", "int", "conversions in the window"),
        c("currency", "text", "ISO 4217 code of revenue credits (null for conversions)"),
        nn("rules_version", "text", "`name@version` of the rules used"),
        nn(
            "through_position",
            "bigint",
            "the log position (notification id) the refresh had read up to: facts recorded "
            "after it are not in these credits yet",
        ),
        nn("computed_at", "timestamptz", "when the window was refreshed (recorded clock)"),
    ),
    ("window_key", "by", "value", "conversion", "key"),
    projected=False,
)

TRACKING = Table(
    "projection_tracking",
    "One row per projection: where in the log it is.",
    (
        nn("name", "text", "the projection (`leadengine projections list`)"),
        nn("position", "bigint", "the last notification id of the log it has applied"),
        nn("updated_at", "timestamptz", "when it last wrote a batch", default="now()"),
        nn("batch_events", "int", "events in its last batch", default="0"),
        nn("batch_seconds", "double precision", "seconds its last batch took", default="0"),
    ),
    ("name",),
    projected=False,
)

RULES = Table(
    "rules_applied",
    "One row per rules set the projector started applying: from which log position and when "
    "(recorded clock), until the next row.",
    (
        nn("rules_version", "text", "`name@version` of the rules (the primary scoring model)"),
        nn(
            "rules_hash",
            "text",
            "sha256 of the whole rules document (canonical JSON): two files with the same "
            "version but different content differ here",
        ),
        nn("rules", "jsonb", "the whole rules document as the engine read it (JSON)"),
        nn(
            "from_position",
            "bigint",
            "the first event (notification id in the log) the projector applied them to",
        ),
        nn(
            "applied_from",
            "timestamptz",
            "when the projector first wrote a batch under them (recorded clock)",
            default="now()",
        ),
    ),
    ("rules_hash", "applied_from"),
    projected=False,
)

# --- accounts (engine/projections/accounts.py writes these; docs/accounts.md) ----------------
ACCOUNT_ID = nn("account_id", "uuid", "the account (a uuid5 of its key; stable)")
ACCOUNT_KEY = nn("account_key", "text", "the account's id as the CRM sends it (the subject)")

ACCOUNT_STATE = Table(
    "account_state",
    "One row per account: its firmographics folded from `account.updated` (each field from "
    "the latest-dated update naming it).",
    (
        ACCOUNT_ID,
        ACCOUNT_KEY,
        c("name", "text", "the account's name"),
        nn(
            "domains",
            "text[]",
            "its business domains, lower case, sorted",
            default="ARRAY[]::text[]",
        ),
        c("industry", "text", "industry"),
        c("employees", "int", "employees"),
        c("annual_revenue", "numeric(20,2)", "yearly revenue"),
        c("country", "text", "ISO 3166-1 alpha-2"),
        c("owner", "text", "the account owner (a rep id): its leads go to them first"),
        c("tier", "int", "target-list tier, 1 the most wanted"),
        c("updated_at", "timestamptz", "the latest update's event time"),
        c("last_event_id", "text", "the CloudEvent id of that update"),
        nn("version", "int", "the account aggregate's version"),
        c(
            "mqa",
            "jsonb",
            "the MQA decision recorded on the account (`{at, trigger, rules, reason, version}`; "
            "internal: the view shows it from `account_scores`)",
        ),
    ),
    ("account_id",),
    upserted=True,
    projected=False,
    indexes=(("account_state_key_idx", "account_key"),),
)

ACCOUNT_SIGNALS = Table(
    "account_signals",
    "One row per lead: what account matching reads of it (internal to the projector).",
    (
        LEAD_ID,
        c("named_account", "text", "the account its events' `account` attribute names, latest"),
        c("email_domain", "text", "its e-mail's domain (kept after forget, like fit rules)"),
        c("company", "text", "its company as given"),
        c("last_activity", "timestamptz", "its latest fact's event time"),
        c("last_event_id", "text", "that fact's CloudEvent id"),
        nn("engagement", "numeric(6,2)", "its engagement score (primary model)"),
        c("persona", "text", "its best persona: its buying-group role (migration 21)"),
    ),
    ("lead_id",),
    upserted=True,
    projected=False,
    # the account book looks a changed account's leads up by these (engine/projections/
    # account_leads.py): it holds no row per lead
    indexes=(
        ("account_signals_domain_idx", "email_domain"),
        ("account_signals_company_idx", "company"),
        ("account_signals_named_idx", "named_account"),
    ),
)

ACCOUNT_MEMBERS = Table(
    "account_members",
    "One row per lead: the account matching decided for it (none: `account_key` null), by "
    "which rule and why.",
    (
        LEAD_ID,
        c("account_id", "uuid", "the account (null: no account)"),
        c("account_key", "text", "the account's id (null: no account)"),
        c("rule", "text", "`explicit`, `domain` or `name` (null: none matched)"),
        nn("reason", "text", "why this account, or why none: rule, candidates, tie-breaker"),
        nn(
            "candidates", "text[]", "the accounts the winning rule found", default="ARRAY[]::text[]"
        ),
        c("decided_at", "timestamptz", "the latest event time among the inputs decided on"),
        nn("rules_version", "text", "`name@version` of the rules that decided"),
    ),
    ("lead_id",),
    upserted=True,
    projected=False,
    indexes=(("account_members_account_idx", "account_id"),),
)

ACCOUNT_SCORES = Table(
    "account_scores",
    "One row per account: fit, engagement rolled up from its leads, the total explained point "
    "by point, and its MQA decision.",
    (
        ACCOUNT_ID,
        ACCOUNT_KEY,
        nn("fit", "numeric(6,2)", "0-100 from the account fit rules (firmographics)"),
        nn("engagement", "numeric(6,2)", "0-100: members' engagement, each up to per_lead_cap"),
        nn("score", "numeric(6,2)", "0-100, fit and engagement weighted (accounts.combine)"),
        nn("members", "int", "leads matched to the account"),
        nn(
            "engaged",
            "int",
            "members with engagement at least accounts.engagement.engaged_at_least",
        ),
        nn("points", "jsonb", "every point: `[{part, rule, points, reason}]`"),
        c("mqa_at", "timestamptz", "when the account became an MQA (its trigger's event time)"),
        c("mqa_trigger", "text", "the CloudEvent id of the input that made it qualify"),
        c("mqa_rules", "text", "`name@version` of the rules that decided MQA"),
        c("mqa_reason", "text", "the thresholds that held"),
        nn("rules_version", "text", "`name@version` of the rules that scored"),
        c("segment", "text", "its buying-group segment (accounts.buying_group.segments)"),
        nn(
            "roles_covered",
            "text[]",
            "required buying-group roles an engaged member holds",
            default="ARRAY[]::text[]",
        ),
        nn(
            "roles_missing",
            "text[]",
            "required buying-group roles no engaged member holds",
            default="ARRAY[]::text[]",
        ),
        nn(
            "group_engagement",
            "numeric(6,2)",
            "0-100: mean over the required roles of the most engaged holder's engagement",
            default="0",
        ),
    ),
    ("account_id",),
    upserted=True,
    projected=False,
)

ACCOUNT_BUYING_GROUP = Table(
    "account_buying_group",
    "One row per account and buying-group role of the rules: who holds it, whether an "
    "engaged member covers it, whether the account's segment requires it.",
    (
        ACCOUNT_ID,
        nn("role", "text", "the role's id (accounts.buying_group.roles)"),
        ACCOUNT_KEY,
        nn("required", "boolean", "the account's segment requires the role"),
        nn("leads", "int", "members whose best persona gives them the role"),
        nn("engaged", "int", "of those, members with engagement at least engaged_at_least"),
        nn("covered", "boolean", "an engaged member holds the role"),
        nn("best_engagement", "numeric(6,2)", "the most engaged holder's engagement (0: none)"),
    ),
    ("account_id", "role"),
    upserted=True,
    projected=False,
)

#: Every table, the projector's in its write order.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        TRACKING,
        LEAD_STATE,
        TOUCHPOINTS,
        STAGE_HISTORY,
        COSTS,
        SCORES,
        ROUTING,
        SLA,
        SLA_ROUNDS,
        MILESTONES,
        IDENTITY_LINKS,
        LEAD_PERSON,
        DUPLICATE_SUGGESTIONS,
        CREDITS,
        WINDOW_CREDITS,
        RULES,
        ACCOUNT_STATE,
        ACCOUNT_SIGNALS,
        ACCOUNT_MEMBERS,
        ACCOUNT_SCORES,
        ACCOUNT_BUYING_GROUP,
    )
}
#: The account tables, in write order (the `leads` projection's, written by
#: engine/projections/accounts.py, not by the projector's generic row paths).
ACCOUNT_TABLES = (
    "account_state",
    "account_signals",
    "account_members",
    "account_scores",
    "account_buying_group",
)
#: The tables the projector writes, in write order.
PROJECTED = tuple(name for name, t in TABLES.items() if t.projected)


def ddl() -> tuple[str, ...]:
    """Every table's statements (`{s}`: the engine's schema), in declaration order."""
    return tuple(statement for table in TABLES.values() for statement in table.ddl())


# --- the read contract ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Out:
    """A contract view's column: `expr` over the view's FROM (default: the table's column
    `name`), with the table column's type and meaning unless given."""

    name: str
    expr: str | None = None
    meaning: str | None = None
    type: str | None = None
    union: str | None = None  # its expression in the view's second branch (UNION ALL)


#: Moments on the engine's clock: when it stored or computed something (`recorded_at`, the
#: report's `--as-of`); every other moment of a contract view is on the happened clock.
RECORDED_CLOCK = frozenset(
    {
        "recorded_at",
        "computed_at",
        "erased_at",
        "applied_from",
        "applied_until",
        "last_projected_at",
        "attribution_credits.as_of",
    }
)


def clock_of(view: str, column: str, kind: str, meaning: str) -> str:
    """What a moment's column adds to its meaning: its clock, unless the meaning names it."""
    if not kind.startswith("timestamptz") or "clock" in meaning:
        return ""
    if column in RECORDED_CLOCK or f"{view}.{column}" in RECORDED_CLOCK:
        return " (recorded clock)"
    return " (happened clock)"


@dataclass(frozen=True)
class View:
    name: str
    meaning: str  # grain: what one row is, current or historical
    table: Table | None
    columns: tuple[Out, ...]
    source: str = ""  # FROM (and WHERE), `{s}` the engine's schema; default: the table
    alias: str = ""  # prefix of default expressions (`c` for `c.lead_id`)
    union_source: str = ""  # FROM of a second branch (UNION ALL), its columns `Out.union`
    star: str = ""  # `SELECT * FROM` this (the KPI views: their SQL is in projections/kpi_views.py)
    doc: str = "read-model.md"  # where its column table is

    def out(self, name: str) -> Out:
        return next(o for o in self.columns if o.name == name)

    def type_of(self, o: Out) -> str:
        if o.type:
            return o.type
        assert self.table is not None, f"{self.name}.{o.name}: no type"
        return self.table.column(o.expr or o.name).type

    def meaning_of(self, o: Out) -> str:
        if o.meaning:
            meaning = o.meaning
        else:
            assert self.table is not None, f"{self.name}.{o.name}: no meaning"
            meaning = self.table.column(o.expr or o.name).meaning
        return meaning + clock_of(self.name, o.name, self.type_of(o), meaning)

    def select(self) -> str:
        """The view's query (`{s}`: the engine's schema)."""
        if self.star:
            return "SELECT * FROM {s}." + self.star
        assert self.table is not None
        prefix = f"{self.alias}." if self.alias else ""

        def expr(o: Out) -> str:
            if o.expr is None:
                return prefix + o.name
            if o.expr.isidentifier():  # a column of the table under another name
                return prefix + o.expr + f" AS {o.name}"
            return f"{o.expr} AS {o.name}"

        query = (
            "SELECT "
            + ", ".join(expr(o) for o in self.columns)
            + " FROM "
            + (self.source or "{s}." + self.table.name)
        )
        if self.union_source:
            query += (
                " UNION ALL SELECT "
                + ", ".join(o.union or o.name for o in self.columns)
                + " FROM "
                + self.union_source
            )
        return query


def _reached(column: str) -> Out:
    i = FUNNEL_AT.index(column)
    stage = STAGE_COLUMNS[i]
    later = FUNNEL_AT[i:]
    if len(later) == 1:
        return Out(column, meaning=f"first reached `{stage}`")
    stages = [STAGE_COLUMNS[FUNNEL_AT.index(x)] for x in later[1:]]
    tail = "`customer`" if len(stages) == 1 else "a later funnel stage"
    meaning = f"first reached `{stage}` or {tail}"
    if stage == "lead":
        meaning += " ([reached](#mql-one-definition))"
    if stage == "mql":
        meaning += ": the official MQL moment ([MQL: one definition](#mql-one-definition))"
    return Out(column, f"least({', '.join(later)})", meaning, "timestamptz")


def _exit(column: str) -> Out:
    stage = STAGE_COLUMNS[STAGE_AT_COLUMNS.index(column)]
    return Out(column, meaning=f"first entered `{stage}`")


_RECORDED_LATEST = Out(
    "recorded_at",
    "l.recorded_at",
    type="timestamptz",
    meaning=LEAD_STATE.column("recorded_at").meaning,
)

VIEWS: dict[str, View] = {}

#: Whether a view's rows are current or historical, said at the end of its meaning (so in its
#: COMMENT and its docs): every contract view is one of these.
ROW_KINDS = {
    "current": "Rows: current state, each replaced when what it shows changes (no history kept).",
    "history": "Rows: history, one added per recorded fact or decision and kept.",
    "computed": "Rows: computed when read, over all time, as of now.",
    "saved": "Rows: saved results, replaced by the next save or refresh of the same key.",
}
ROWS = {
    "lead_current": "current",
    "identity_links": "history",
    "lead_touchpoints": "history",
    "lead_stage_history": "history",
    "lead_owner_history": "history",
    "lead_milestones": "history",
    "lead_scores": "current",
    "lead_sla": "current",
    "lead_sla_rounds": "current",
    "campaign_costs": "history",
    "attribution_credits": "saved",
    "attribution_by_window": "saved",
    "account_state": "current",
    "account_members": "current",
    "account_scores": "current",
    "account_buying_group": "current",
    "duplicate_suggestions": "current",
    "kpi_stage_reached": "computed",
    "kpi_funnel": "computed",
    "kpi_account_funnel": "computed",
    "kpi_time_in_stage": "computed",
    "kpi_sales_cycle": "computed",
    "kpi_lead_flow": "computed",
    "kpi_email": "computed",
    "kpi_cost_per_stage": "computed",
    "rules_in_force": "history",
    "contract_info": "computed",
}


def _view(v: View) -> None:
    """Declare a contract view; its meaning ends with whether its rows are current (ROWS)."""
    VIEWS[v.name] = replace(v, meaning=f"{v.meaning} {ROW_KINDS[ROWS[v.name]]}")


def outs(names: str) -> tuple[Out, ...]:
    """Columns shown as the table has them, by name."""
    return tuple(Out(n) for n in names.split())


def _alias(old: str, new: str) -> str:
    return (
        f"the same as `{new}`: the name before the contract named each concept once, kept for "
        f"one contract version (docs/read-model.md, 'Names'); use `{new}`"
    )


#: Touch types a sales rep makes (their data names the `rep`): calls and meetings.
SALES_TOUCH_TYPES = tuple(t for t, model in TOUCH_TYPES.items() if "rep" in model.model_fields)

_view(
    View(
        "lead_current",
        "One row per lead: its current stage, owner, score and profile.",
        LEAD_STATE,
        (
            *outs(
                "lead_id lead_key stage owner owner_source queue score fit engagement "
                "rules_version best_persona persona_fit source_channel source_campaign"
            ),
            Out(
                "first_touch_at",
                meaning="the lead's first touch of any type, the one that sets `source_channel` "
                "(the SLA's first sales touch is `lead_sla.first_sales_touch_at`)",
            ),
            *outs(
                "last_touch_at touch_count touch_counts company title country industry "
                "employees seniority"
            ),
            *(_reached(col) if col in FUNNEL_AT else _exit(col) for col in STAGE_AT_COLUMNS),
            *outs("won_amount won_currency anomalies mql_rounds last_event_at erased_at"),
            Out("lead_version", "version"),
            Out(
                "mql_entered_at",
                "mql_at",
                "first time the lead was in stage `mql` itself (the MQL rule met); null if it "
                "never was, e.g. sales accepted it first (the other MQL definition)",
            ),
            Out("recorded_at"),
            Out(
                "person_id",
                "coalesce((SELECT p.person_id FROM {s}.lead_person p "
                "WHERE p.lead_id = lead_state.lead_id), lead_id)",
                "the person this lead is part of (docs/identity.md): the `lead_id` of the lead "
                "its links and merges lead to; its own `lead_id` when it was never linked or "
                "merged. Count people with `count(DISTINCT person_id)`",
                "uuid",
            ),
        ),
    )
)

_view(
    View(
        "identity_links",
        "Every identity decision: an alias linked to a known lead (`identity.linked`), two "
        "leads merged (`lead.merged`) or a merge undone (`lead.unmerged`), as recorded; see "
        "docs/identity.md. Facts are never moved: each stays under the key it arrived with, and "
        "`person_id` says who is one.",
        IDENTITY_LINKS,
        (
            Out(
                "lead_id",
                meaning="the lead the event named as its `subject` (the alias, the merge loser)",
            ),
            Out("lead_key", "l.lead_key", "its key (null while the lead has no row yet)", "text"),
            Out("kind"),
            Out(
                "other_lead_id",
                "other_id",
                "the other lead (`data.to` of a link, `data.winner` of a merge)",
            ),
            Out(
                "other_lead_key",
                "o.lead_key",
                "its key (null while that lead has no events of its own)",
                "text",
            ),
            Out("by", meaning="who decided (merges and unmerges; null for links)"),
            Out("subject_wins"),
            Out("reason", meaning="why, in upstream's words"),
            Out("source"),
            Out("event_id"),
            Out("occurred_at", meaning="when it happened upstream"),
            Out(
                "recorded_at",
                meaning="when the engine recorded it (`--as-of` cuts people on it)",
            ),
            Out(
                "person_id",
                "coalesce(p.person_id, i.lead_id)",
                "the person `lead_id` is part of now",
                "uuid",
            ),
        ),
        alias="i",
        source="{s}.identity_links i "
        "LEFT JOIN {s}.lead_state l ON l.lead_id = i.lead_id "
        "LEFT JOIN {s}.lead_state o ON o.lead_id = i.other_id "
        "LEFT JOIN {s}.lead_person p ON p.lead_id = i.lead_id",
    )
)

_view(
    View(
        "duplicate_suggestions",
        "Every pair of leads a duplicate rule found (docs/identity.md#duplicates), with the "
        "people they are part of now.",
        DUPLICATE_SUGGESTIONS,
        (
            *outs("rule match action winner_id loser_id"),
            Out(
                "winner_person_id",
                "coalesce(pw.person_id, d.winner_id)",
                "the person the winner is part of now",
                "uuid",
            ),
            Out(
                "loser_person_id",
                "coalesce(pl.person_id, d.loser_id)",
                "the person the loser is part of now",
                "uuid",
            ),
            *outs("rules_version suggested_at recorded_at state"),
        ),
        alias="d",
        source="{s}.duplicate_suggestions d "
        "LEFT JOIN {s}.lead_person pw ON pw.lead_id = d.winner_id "
        "LEFT JOIN {s}.lead_person pl ON pl.lead_id = d.loser_id",
    )
)

_view(
    View(
        "lead_touchpoints",
        "One row per touch (micro-conversion).",
        TOUCHPOINTS,
        (
            *outs("lead_id lead_key event_id type channel campaign content url rep"),
            Out("occurred_at", meaning="when it happened"),
            Out("recorded_at", meaning="when the engine stored it"),
            Out("source"),
            Out(
                "position",
                meaning="arrival order: the touch's notification id in the engine's log "
                "(recorded clock); orders touches that share `occurred_at`, as the reports do",
            ),
            Out(
                "sales_touch",
                "type IN (" + ", ".join(f"'{t}'" for t in SALES_TOUCH_TYPES) + ")",
                "true for a touch a sales rep made: "
                + ", ".join(f"`{t}`" for t in SALES_TOUCH_TYPES)
                + "; false for marketing touches",
                "boolean",
            ),
        ),
    )
)

_view(
    View(
        "lead_stage_history",
        "One row per move of the lead's current path (walked in event time: docs/reports.md, "
        '"Time"), with the reason and the event that caused it. A move a late fact took back is '
        "not shown (the table keeps it, stamped `retracted_at`).",
        STAGE_HISTORY,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            Out("lead_version", "version"),
            *outs(
                "from_stage to_stage decision reason score trigger_event_id occurred_at recorded_at"
            ),
        ),
        source="{s}.lead_stage_history WHERE retracted_at IS NULL",
    )
)

_view(
    View(
        "lead_owner_history",
        "Every owner change and every routing attempt that found nobody.",
        ROUTING,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            Out("occurred_at"),
            Out("recorded_at"),
            Out(
                "outcome",
                "CASE outcome WHEN 'routed' THEN 'routed' ELSE 'not_routed' END",
                "`routed` (the engine chose), `not_routed` (nobody available or no queue "
                "matched), `assigned` (upstream `owner.assigned`)",
                "text",
                "'assigned'",
            ),
            Out("owner", meaning="the new owner (null for `not_routed`)", union="actor"),
            Out("queue", union="NULL"),
            Out(
                "strategy",
                meaning="routing strategy: `round_robin`, `weighted_round_robin` or "
                "`least_loaded`; null for `assigned` and `not_routed`",
                union="NULL",
            ),
            Out("why", union="'owner.assigned upstream'"),
            Out("trigger_event_id", union="event_id"),
        ),
        union_source="{s}.lead_milestones WHERE type = 'owner.assigned'",
    )
)

_view(
    View(
        "lead_milestones",
        MILESTONES.meaning,
        MILESTONES,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            *outs("event_id type"),
            Out("actor", meaning=_alias("actor", "rep")),
            *outs("reason amount currency occurred_at recorded_at source"),
            Out(
                "rep",
                "actor",
                "the rep the fact names: who accepted, rejected, qualified or disqualified, the "
                "new owner of `owner.assigned`",
            ),
        ),
    )
)

_view(
    View(
        "lead_scores",
        SCORES.meaning,
        SCORES,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            *outs("model model_version fit engagement score"),
            Out("as_of", meaning=_alias("as_of", "scored_at")),
            _RECORDED_LATEST,
            Out(
                "scored_at",
                "as_of",
                "the moment scored: when the lead's latest fact happened (happened clock)",
            ),
        ),
        source="{s}.lead_scores c LEFT JOIN {s}.lead_state l USING (lead_id)",
        alias="c",
    )
)

_view(
    View(
        "lead_sla",
        SLA.meaning,
        SLA,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            *outs("round owner queue routed_at"),
            Out("first_touch_due", meaning=_alias("first_touch_due", "first_sales_touch_due")),
            Out("first_touch_at", meaning=_alias("first_touch_at", "first_sales_touch_at")),
            *outs("decision_due decided_at"),
            _RECORDED_LATEST,
            Out("first_sales_touch_due", "first_touch_due"),
            Out("first_sales_touch_at", "first_touch_at"),
        ),
        source="{s}.lead_sla c LEFT JOIN {s}.lead_state l USING (lead_id)",
        alias="c",
    )
)


def _round_state(done: str, due: str, risk: str) -> str:
    """A round's timer state at `now()` (the SQL of engine/domain/sla.py's `timer`, and a round
    the next routing ended before its deadline, untouched, is `superseded`)."""
    return (
        f"CASE WHEN r.{done} IS NOT NULL AND r.{done} <= now() THEN "
        f"CASE WHEN r.{done} <= r.{due} THEN 'met' ELSE 'breached' END "
        f"WHEN r.ended_at IS NOT NULL AND r.ended_at <= r.{due} THEN 'superseded' "
        f"WHEN least(coalesce(r.ended_at, 'infinity'), now()) > r.{due} THEN 'breached' "
        f"WHEN now() >= r.{risk} THEN 'at_risk' ELSE 'pending' END"
    )


_STATES = (
    "`met` (done by the deadline), `breached` (done late, or not done and past the deadline "
    "when the round ended or now), `at_risk` (not done, past the at-risk moment), `pending`, "
    "or `superseded` (the next round began before the deadline, nothing done); evaluated at "
    "`state_at`"
)

_view(
    View(
        "lead_sla_rounds",
        "One row per routing round of each routed lead (every engine routing; an upstream "
        "`owner.assigned` starts no SLA round): owner, queue and why, the round's first sales "
        "touch and decision, the deadlines and each timer's state now. The latest round is "
        "the row `lead_sla` shows.",
        SLA_ROUNDS,
        (
            Out("lead_id", meaning="the lead"),
            Out("lead_key", meaning="the lead's key"),
            *outs("round owner queue strategy why trigger_event_id routed_at ended_at"),
            Out(
                "latest",
                "r.ended_at IS NULL",
                "true for the lead's latest round (the one in `lead_sla`)",
                "boolean",
            ),
            Out("first_sales_touch_due", "first_touch_due"),
            Out("first_sales_touch_at_risk", "first_touch_at_risk"),
            Out("first_sales_touch_at", "first_touch_at"),
            Out(
                "first_sales_touch_state",
                _round_state("first_touch_at", "first_touch_due", "first_touch_at_risk"),
                "the first-touch timer: " + _STATES,
                "text",
            ),
            *outs("decision_due decision_at_risk decided_at"),
            Out(
                "decision_state",
                _round_state("decided_at", "decision_due", "decision_at_risk"),
                "the decision timer: " + _STATES,
                "text",
            ),
            Out(
                "state_at",
                "now()",
                "the moment the states are evaluated at: the start of the reading transaction "
                "(wall clock, `now()`); the deadlines and done times are on the happened clock",
                "timestamptz",
            ),
            _RECORDED_LATEST,
        ),
        source="{s}.lead_sla_rounds r LEFT JOIN {s}.lead_state l USING (lead_id)",
        alias="r",
    )
)

_view(
    View(
        "campaign_costs",
        COSTS.meaning,
        COSTS,
        tuple(Out(n) for n in COSTS.names),
    )
)

_view(
    View(
        "attribution_credits",
        CREDITS.meaning,
        CREDITS,
        tuple(Out(n) for n in CREDITS.names),
    )
)

_view(
    View(
        "attribution_by_window",
        WINDOW_CREDITS.meaning,
        WINDOW_CREDITS,
        (
            *outs("window_key window_kind window_from window_to by value conversion key"),
            *(Out(m) for m in WINDOW_MODELS),
            *outs("total conversions currency rules_version through_position computed_at"),
        ),
    )
)

_view(
    View(
        "account_state",
        ACCOUNT_STATE.meaning + " With its score and MQA (`account_scores`).",
        ACCOUNT_STATE,
        (
            *(Out(n) for n in ACCOUNT_STATE.names if n not in ("last_event_id", "version", "mqa")),
            *(
                Out(
                    n,
                    f"c.{n}",
                    type=ACCOUNT_SCORES.column(n).type,
                    meaning=ACCOUNT_SCORES.column(n).meaning,
                )
                for n in (
                    "fit",
                    "engagement",
                    "score",
                    "members",
                    "engaged",
                    "mqa_at",
                    "mqa_trigger",
                    "mqa_rules",
                    "segment",
                    "roles_covered",
                    "roles_missing",
                    "group_engagement",
                )
            ),
            Out(
                "provisional",
                "a.account_key LIKE 'provisional/%'",
                type="boolean",
                meaning="opened by the engine for an unmatched business domain, not a CRM "
                "account (docs/accounts.md#provisional-accounts)",
            ),
        ),
        source="{s}.account_state a LEFT JOIN {s}.account_scores c USING (account_id)",
        alias="a",
    )
)

_view(
    View(
        "account_members",
        "One row per lead matched to an account: which account, by which rule and why. A "
        "forgotten lead is not listed (its contribution stays in `account_scores`).",
        ACCOUNT_MEMBERS,
        (
            Out("lead_id", meaning="the lead"),
            Out(
                "lead_key",
                "l.lead_key",
                meaning="the lead's key (its pseudonym once forgotten)",
                type="text",
            ),
            *outs("account_id account_key rule reason candidates decided_at rules_version"),
        ),
        source="{s}.account_members m LEFT JOIN {s}.lead_state l USING (lead_id) "
        "WHERE m.account_id IS NOT NULL AND l.erased_at IS NULL",
        alias="m",
    )
)

_view(
    View(
        "account_scores",
        ACCOUNT_SCORES.meaning,
        ACCOUNT_SCORES,
        tuple(Out(n) for n in ACCOUNT_SCORES.names),
    )
)

_view(
    View(
        "account_buying_group",
        ACCOUNT_BUYING_GROUP.meaning,
        ACCOUNT_BUYING_GROUP,
        tuple(Out(n) for n in ACCOUNT_BUYING_GROUP.names),
    )
)


def _kpi(name: str, meaning: str, *columns: tuple[str, str, str]) -> None:
    outs = tuple(Out(n, meaning=m, type=t) for n, t, m in columns)
    _view(View(name, meaning, None, outs, star=name, doc="reports.md"))


_kpi(
    "kpi_stage_reached",
    "One row per lead and funnel stage it reached.",
    ("lead_id", "uuid", "the lead aggregate's id"),
    ("lead_key", "text", "the lead's key upstream (CloudEvent subject)"),
    ("stage", "text", ", ".join(f"`{s}`" for s in FUNNEL[1:])),
    ("rank", "int", f"1..{len(FUNNEL) - 1} in that order"),
    ("reached_at", "timestamptz", "first time the lead reached this stage or a later one"),
)
_kpi(
    "kpi_funnel",
    "One row per funnel stage: people that reached it, all time (a person of several leads "
    "counts once: docs/identity.md).",
    ("stage", "text", "funnel stage"),
    ("position", "int", f"1..{len(FUNNEL) - 1}"),
    ("reached", "bigint", "people that reached it (skips count)"),
    (
        "conversion_pct",
        "numeric",
        "100 * reached / reached of the stage before (null for `lead`)",
    ),
)
_kpi(
    "kpi_account_funnel",
    "One row per funnel stage: accounts that reached it, all time. An account reaches a stage "
    "when its first lead does (its leads: `account_members`, as matched now).",
    ("stage", "text", "funnel stage"),
    ("position", "int", f"1..{len(FUNNEL) - 1}"),
    ("accounts", "bigint", "accounts with a lead that reached it (skips count)"),
    (
        "conversion_pct",
        "numeric",
        "100 * accounts / accounts of the stage before (null for `lead`)",
    ),
    ("first_reached_at", "timestamptz", "the first time any account reached it"),
)
_kpi(
    "kpi_time_in_stage",
    "One row per stage: completed stays in it of the people in the funnel (a person's stays "
    "follow its leads' moves in event time).",
    ("stage", "text", "any stage a lead moved into (exits included)"),
    ("stays", "bigint", "completed stays (the lead has since moved on)"),
    ("median_days", "numeric", "median duration of those stays in days"),
    ("p90_days", "numeric", "90th percentile of the duration of those stays in days"),
)
_kpi(
    "kpi_sales_cycle",
    "One row: days from first reaching `lead` to first reaching `customer`, all customers "
    "(people: a person's first moments are its leads' earliest).",
    ("customers", "bigint", "people that reached `customer`"),
    ("average_days", "numeric", "average days from lead to customer"),
    ("median_days", "numeric", "median days from lead to customer"),
    ("shortest_days", "numeric", "fewest days from lead to customer"),
    ("longest_days", "numeric", "most days from lead to customer"),
)
_kpi(
    "kpi_lead_flow",
    "One row per month, week, source and funnel stage: entries into the stage (a flow, by "
    "when the entry happened; a person's first entry, from any of its leads, counts once).",
    ("month", "text", "`YYYY-MM` (UTC) of the stage entry"),
    ("week", "date", "Monday of the ISO week (UTC)"),
    ("source_channel", "text", "channel of the person's first touch, `(none)` if none"),
    ("source_campaign", "text", "campaign of the person's first touch, `(none)` if none"),
    ("stage", "text", "the funnel stage entered"),
    ("position", "int", "its rank, 1..6"),
    ("leads", "bigint", "people entering it in that month/week from that source"),
)
_kpi(
    "kpi_email",
    "One row per email campaign: email events of each kind (events, not unique people).",
    ("campaign", "text", "email campaign (`(none)` if the touch named none)"),
    ("sent", "bigint", "emails sent"),
    ("opened", "bigint", "opens"),
    ("clicked", "bigint", "clicks"),
    ("bounced", "bigint", "bounces"),
    ("unsubscribed", "bigint", "unsubscribes"),
    ("delivered", "bigint", "sent - bounced"),
    ("open_rate_pct", "numeric", "100 * opened / delivered"),
    ("click_rate_pct", "numeric", "100 * clicked / delivered"),
    ("click_to_open_pct", "numeric", "100 * clicked / opened"),
    ("bounce_rate_pct", "numeric", "100 * bounced / sent"),
    ("unsubscribe_rate_pct", "numeric", "100 * unsubscribed / delivered"),
)
_kpi(
    "kpi_cost_per_stage",
    "One row per channel and currency its costs or won deals are in (a channel with neither: "
    "one row, `currency` null); amounts are never converted nor added across currencies, and "
    "the lead counts repeat on each currency's row. Each row equals `report kpis --section "
    "money --currency <its currency>` over all time with no rate table.",
    ("channel", "text", "cost channel / the people's source channel"),
    (
        "currency",
        "text",
        "ISO 4217 code of `cost` and `revenue` (null: the channel has neither)",
    ),
    ("cost", "numeric", "all recorded cost lines of the channel in that currency"),
    ("leads", "bigint", "people from that source (reached `lead`; a person counts once)"),
    ("mqls", "bigint", "people from that source that reached `mql`"),
    ("sqls", "bigint", "people from that source that reached `sql`"),
    ("customers", "bigint", "people from that source that reached `customer`"),
    ("cost_per_lead", "numeric", "cost / leads"),
    ("cost_per_mql", "numeric", "cost / mqls"),
    ("cost_per_sql", "numeric", "cost / sqls"),
    ("cost_per_customer", "numeric", "cost / customers"),
    ("revenue", "numeric", "won deals of people from that source, in that currency"),
    ("revenue_per_customer", "numeric", "revenue / customers"),
)


def _fields(model: type[BaseModel]) -> str:
    return ", ".join(f"`{name}`" for name in model.model_fields)


_UNTIL = "lead(applied_from) OVER (ORDER BY applied_from, from_position)"

_view(
    View(
        "rules_in_force",
        "One row per rules set the engine's projector applied to current-state rows "
        "(`lead_current`, `lead_scores`, `lead_sla`), from when until the next; the row with "
        "`in_force` true is today's. MQL decisions name the rules they were taken under "
        "themselves (`lead_stage_history.decision`).",
        RULES,
        (
            Out("rules_version"),
            Out("rules_hash"),
            Out("from_position"),
            Out("applied_from"),
            Out(
                "applied_until",
                _UNTIL,
                "when the next rules set took over (recorded clock); null while in force",
                "timestamptz",
            ),
            Out("in_force", f"{_UNTIL} IS NULL", "true for the rules in force now", "boolean"),
            Out(
                "mql_rule",
                "rules -> 'mql'",
                f"the primary model's MQL rule: {_fields(MqlRule)}",
                "jsonb",
            ),
            Out(
                "score_weights",
                "rules -> 'combine'",
                f"how fit and engagement combine into the score: {_fields(Combine)}",
                "jsonb",
            ),
            Out(
                "sla_first_touch_types",
                "rules -> 'sla' -> 'first_touch_types'",
                "touch types that count as the first sales touch for the SLA (null: no SLA)",
                "jsonb",
            ),
            Out(
                "sla_business_hours",
                "rules -> 'sla' -> 'business_hours'",
                f"the SLA's business hours: {_fields(BusinessHours)}",
                "jsonb",
            ),
            Out(
                "sla",
                "rules -> 'sla'",
                f"the whole SLA section (null: no SLA): {_fields(Sla)}",
                "jsonb",
            ),
            Out(
                "attribution_exclude_types",
                "rules -> 'attribution' -> 'exclude_types'",
                "touch types attribution leaves out",
                "jsonb",
            ),
            Out("rules"),
        ),
    )
)

#: contract_info's query is engine/readmodel.py's (it names the contract's version)
_view(
    View(
        "contract_info",
        "One row per projection: which contract this is and how fresh each projection is. A "
        'freshness check tells "no new events" (`lag` 0) from "projector stalled" (`lag` '
        "above 0 and `last_projected_at` old).",
        None,
        (
            Out(
                "contract_version",
                type="text",
                meaning="a hash of every view's definition: it "
                "changes whenever a view does (a column added, a definition fixed); store it and "
                "compare",
            ),
            Out(
                "projection",
                type="text",
                meaning="`leads`, `touchpoints`, `history` or `costs` "
                "(which views each feeds: `leadengine projections list`)",
            ),
            Out(
                "position",
                type="bigint",
                meaning="the last event (notification id in the log) the projection has applied",
            ),
            Out("log_head", type="bigint", meaning="the last event in the log now (0 before any)"),
            Out(
                "lag",
                type="bigint",
                meaning="events in the log the projection has not applied "
                "yet (`log_head - position`)",
            ),
            Out(
                "last_projected_at",
                type="timestamptz",
                meaning="when the projection last wrote a batch (recorded clock)",
            ),
        ),
    )
)


# --- comments -------------------------------------------------------------------------

_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def plain(text: str) -> str:
    """A meaning as a PostgreSQL comment shows it: markdown links reduced to their text."""
    return _LINK.sub(r"\1", text)


def table_comments(schema: str, table: Table) -> list[sql.Composed]:
    t = sql.Identifier(schema, table.name)
    out = [sql.SQL("COMMENT ON TABLE {} IS {}").format(t, sql.Literal(plain(table.meaning)))]
    out += [
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
            t, sql.Identifier(col.name), sql.Literal(plain(col.meaning))
        )
        for col in table.columns
    ]
    return out


def view_comments(schema: str, view: View, present: set[str] | None = None) -> list[sql.Composed]:
    """The view's comment and its columns' (`present`: only those columns, as the view
    stands in the database)."""
    v = sql.Identifier(schema, view.name)
    out = [sql.SQL("COMMENT ON VIEW {} IS {}").format(v, sql.Literal(plain(view.meaning)))]
    out += [
        sql.SQL("COMMENT ON COLUMN {}.{} IS {}").format(
            v, sql.Identifier(o.name), sql.Literal(plain(view.meaning_of(o)))
        )
        for o in view.columns
        if present is None or o.name in present
    ]
    return out


# --- docs -----------------------------------------------------------------------------

BEGIN, END = "<!-- registry:begin -->", "<!-- registry:end -->"


def _doc_type(kind: str) -> str:
    return kind.split("(")[0]


def markdown(doc: str) -> str:
    """The column tables of the views documented in `doc` (read-model.md or reports.md)."""
    parts = [BEGIN]
    for view in VIEWS.values():
        if view.doc != doc:
            continue
        parts.append(f"### `{view.name}`\n{view.meaning}\n")
        parts.append("| column | type | meaning |\n|---|---|---|")
        parts += [
            f"| `{o.name}` | {_doc_type(view.type_of(o))} | {view.meaning_of(o)} |"
            for o in view.columns
        ]
        parts.append("")
    parts.append(END)
    return "\n".join(parts)


def rewrite(path: Path) -> bool:
    """Rewrite the generated section of `path`; True if it changed."""
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + markdown(path.name) + tail
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m engine.projections.registry docs/read-model.md ...
    for arg in sys.argv[1:]:
        print(f"{arg}: {'rewritten' if rewrite(Path(arg)) else 'up to date'}")
