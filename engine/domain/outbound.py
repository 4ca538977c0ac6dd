"""The outbound contract: what `leadengine relay` publishes (docs/integration.md).

One pydantic model per decision type gives its `data`; engine/domain/decisions.py builds every
CloudEvent's data through these models, and `schemas/<type>.json` are exported from them (the
same drift test as the inbound schemas), so the code, the schemas and the docs say one thing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_BASE = "https://leadengine.dev/schemas/"


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lead_id: str = Field(description="The lead's id (a keyed hash: reveals nothing)")
    version: int = Field(ge=1, description="The decision's version in the lead's stream")


class Reason(BaseModel):
    """One line of the score at the MQL moment, as `leadengine lead explain` shows it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    part: Literal["fit", "engagement"]
    rule: str
    event_id: str | None
    event_type: str | None
    points: float
    note: str


class Qualified(_Data):
    from_stage: str
    score: float
    fit: float
    engagement: float
    rules_version: str = Field(description="name@version of the scoring rules that decided")
    trigger_event_id: str = Field(description="The upstream CloudEvent id that tipped the score")
    occurred_at: str = Field(description="The trigger's event time (ISO 8601)")
    reasons: list[Reason] = Field(
        description="The score's largest lines (up to 5, largest points first); empty when the "
        "relay runs other rules than those that decided"
    )


class Routed(_Data):
    owner: str
    queue: str
    strategy: str
    why: str
    trigger_event_id: str
    occurred_at: str


class RoutingFailed(_Data):
    queue: str | None
    reason: str
    trigger_event_id: str
    occurred_at: str


class StageChanged(_Data):
    from_stage: str
    to_stage: str
    reason: str
    trigger_event_id: str
    occurred_at: str = Field(description="When the lead moved, in event time (ISO 8601)")


class StageRetracted(_Data):
    retracted_id: str = Field(
        description="The id of the lead.stage_changed (or lead.qualified) taken back"
    )
    to_stage: str = Field(description="The stage of the move taken back")
    reason: str
    trigger_event_id: str = Field(description="The late fact that changed the path")


class AnomalyFlagged(_Data):
    event_id: str
    event_type: str
    reason: str


class Erased(_Data):
    """Only when: the reason and who asked stay in the store."""

    occurred_at: str


class SlaAlerted(_Data):
    """Recorded by `leadengine timers` when the moment passed (engine/services/timers.py)."""

    timer: Literal["first_touch", "decision"]
    status: Literal["at_risk", "breached"]
    at: str = Field(description="The at-risk or due moment that passed (ISO 8601)")
    due: str = Field(description="When the timer is (was) due")
    routed_at: str = Field(description="The routing round the timer belongs to")
    owner: str
    queue: str


class IdentityDecided(_Data):
    """An identity decision (`Lead.Linked`, docs/identity.md) on this lead, the one whose key
    the upstream identity event named as its subject. Ids only: the other lead is named by
    its id, never its key, and the upstream's free-text `reason` stays in the store."""

    relation: Literal["linked", "merged", "unmerged"] = Field(
        description="linked (an alias of the other lead), merged (a duplicate of it) or "
        "unmerged (two people again: every earlier join of the two taken back)"
    )
    other_id: str = Field(
        description="The other lead's id (a keyed hash: reveals nothing): the link's known "
        "lead or the merge's winner"
    )
    event_id: str = Field(description="The upstream CloudEvent id of the identity fact")
    source: str = Field(description="The upstream CloudEvent source of the identity fact")
    by: str | None = Field(description="Who decided (merges and unmerges); null for a link")
    occurred_at: str = Field(description="The identity fact's event time (ISO 8601)")
    subject_wins: bool = Field(
        default=False,
        description="true: this lead won the merge and `other_id` is the duplicate (an engine "
        "merge recorded on the older key when it arrived after the younger); false: "
        "`other_id` is the link's known lead or the merge's winner",
    )


class AccountQualified(BaseModel):
    """An account became a marketing-qualified account (docs/accounts.md): recorded once on
    the Account aggregate, with the input that made it qualify and the rules that decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    account_id: str = Field(description="The account's id (a uuid5 of its key)")
    version: int = Field(ge=1, description="The decision's version in the account's stream")
    score: float = Field(description="The account score (0-100) when it qualified")
    fit: float
    engagement: float
    members: int = Field(ge=0, description="Leads matched to the account then")
    engaged: int = Field(ge=0, description="Of those, the engaged ones")
    rules_version: str = Field(description="name@version of the rules that decided")
    trigger_event_id: str = Field(
        description="The upstream CloudEvent id of the input (an account update or a member "
        "lead's event) that made the account qualify"
    )
    occurred_at: str = Field(description="The trigger's event time (ISO 8601)")
    reason: str = Field(description="The thresholds that held")


class AccountMemberDecided(BaseModel):
    """A lead-to-account match decision about this account (docs/accounts.md): the lead joined
    it by a matching rule, or left it (matched to another account, or to none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    account_id: str = Field(description="The account's id (a uuid5 of its key)")
    version: int = Field(ge=1, description="The decision's version in the account's stream")
    lead_id: str = Field(description="The lead's id (a keyed hash: reveals nothing)")
    relation: Literal["joined", "left"]
    rule: str | None = Field(description="explicit, domain or name; null when it left")
    reason: str = Field(description="Why: the rule, the candidates, the tie-breaker")
    candidates: list[str] = Field(description="The accounts the winning rule found")
    rules_version: str = Field(description="name@version of the matching rules")
    occurred_at: str | None = Field(
        description="The event time of the latest input the decision read (ISO 8601)"
    )
    baseline: bool = Field(
        default=False,
        description="true: the lead's match taken before decisions were recorded "
        "(leadengine before migration 22), recorded just before the decision that changes it",
    )


DATA: dict[str, type[BaseModel]] = {
    "lead.qualified": Qualified,
    "lead.routed": Routed,
    "lead.routing_failed": RoutingFailed,
    "lead.stage_changed": StageChanged,
    "lead.stage_retracted": StageRetracted,
    "lead.anomaly_flagged": AnomalyFlagged,
    "lead.erased": Erased,
    "lead.sla_alerted": SlaAlerted,
    "lead.identity_decided": IdentityDecided,
    "account.qualified": AccountQualified,
    "account.member_decided": AccountMemberDecided,
}
#: the decisions about accounts (the rest are about leads): subject and id name the account
ACCOUNT_KINDS = frozenset({"account.qualified", "account.member_decided"})


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a whole outbound CloudEvent of type `kind`."""
    data = DATA[kind].model_json_schema()
    defs = data.pop("$defs", None)
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA_BASE}{kind}.json",
        "$comment": "Outbound: published by `leadengine relay` (docs/integration.md). The id "
        f"is <{'account' if kind in ACCOUNT_KINDS else 'lead'}_id>:<version>; a record "
        "published again carries the same id and bytes.",
        "title": kind,
        "type": "object",
        "additionalProperties": False,
        "required": ["specversion", "id", "source", "type", "subject", "time", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "pattern": "^[0-9a-f-]{36}:[0-9]+$"},
            "source": {"const": "leadengine"},
            "type": {"const": kind},
            "subject": {
                "type": "string",
                "description": "The account id as the CRM sends it"
                if kind in ACCOUNT_KINDS
                else "The lead key; its pseudonym once the lead is forgotten",
            },
            "time": {"type": "string", "description": "When the engine recorded the decision"},
            "datacontenttype": {"const": "application/json"},
            "data": data,
        },
    }
    if defs:  # where the data schema's "#/$defs/..." references point, at the top
        schema["$defs"] = defs
    return schema
