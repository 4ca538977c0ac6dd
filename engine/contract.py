"""The event contract: CloudEvents 1.0 (structured JSON mode), one pydantic model per `type`.

Upstream systems send these; `parse_event` turns raw bytes into a validated `Envelope` or raises
`InvalidEvent` naming the event id, the field and what was expected. Fields marked PII carry
`"x-pii": true` in their JSON Schema so the store can treat them with care.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from engine.errors import InvalidEvent

PII: dict[str, Any] = {"x-pii": True}
Money = Decimal


class Data(BaseModel):
    """Base of every payload: unknown fields are refused so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = Field(default=1, ge=1, description="Version of this payload's schema.")


class LeadCaptured(Data):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", json_schema_extra=PII)
    name: str | None = Field(default=None, max_length=200, json_schema_extra=PII)
    phone: str | None = Field(default=None, max_length=40, json_schema_extra=PII)
    company: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2"
    )


class ProfileUpdated(Data):
    industry: str | None = None
    employees: int | None = Field(default=None, ge=0)
    annual_revenue: Money | None = Field(default=None, ge=0)
    title: str | None = Field(default=None, max_length=200)
    seniority: str | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class Touch(Data):
    """A micro-conversion: where it came from (channel, campaign, content) and where it landed."""

    channel: str = Field(min_length=1, max_length=100)
    campaign: str | None = Field(default=None, max_length=200)
    content: str | None = Field(default=None, max_length=500)
    url: str | None = Field(default=None, max_length=2000)


class EmailBounced(Touch):
    bounce_type: Literal["hard", "soft"] = "hard"


class FormSubmitted(Touch):
    form: str | None = None


class CallLogged(Touch):
    direction: Literal["inbound", "outbound"]
    outcome: Literal["connected", "voicemail", "no_answer", "bad_number"]
    rep: str = Field(min_length=1)
    duration_seconds: int | None = Field(default=None, ge=0)
    notes: str | None = Field(default=None, max_length=5000, json_schema_extra=PII)


class Meeting(Touch):
    rep: str | None = None


class OwnerAssigned(Data):
    owner: str = Field(min_length=1)
    assigned_by: str | None = None


class SalesAction(Data):
    rep: str | None = None


class SalesWithReason(SalesAction):
    reason: str = Field(min_length=1, max_length=500)


class NurtureEnrolled(Data):
    program: str | None = None
    reason: str | None = None


class Amount(Data):
    amount: Money = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217")


class OpportunityOpened(Amount):
    opportunity_id: str | None = None


class DealWon(Amount):
    opportunity_id: str | None = None


class DealLost(Data):
    reason: str = Field(min_length=1, max_length=500)
    opportunity_id: str | None = None


class RepAvailabilityChanged(Data):
    """A sales rep's availability (holiday, sick, full) and optionally a new capacity.

    The CloudEvent's `subject` is the rep's id as routing rules name it."""

    available: bool
    capacity: int | None = Field(default=None, ge=0, description="Most open leads at once.")
    reason: str | None = Field(default=None, max_length=500)


class CampaignCostRecorded(Amount):
    campaign: str = Field(min_length=1)
    channel: str = Field(min_length=1)
    period_start: date
    period_end: date


TOUCH_TYPES: dict[str, type[Data]] = {
    "touch.ad_clicked": Touch,
    "touch.page_viewed": Touch,
    "touch.email_sent": Touch,
    "touch.email_opened": Touch,
    "touch.email_clicked": Touch,
    "touch.email_bounced": EmailBounced,
    "touch.unsubscribed": Touch,
    "touch.form_submitted": FormSubmitted,
    "touch.content_downloaded": Touch,
    "touch.webinar_registered": Touch,
    "touch.webinar_attended": Touch,
    "touch.call_logged": CallLogged,
    "touch.meeting_booked": Meeting,
    "touch.meeting_held": Meeting,
}

EVENT_TYPES: dict[str, type[Data]] = {
    "lead.captured": LeadCaptured,
    "lead.profile_updated": ProfileUpdated,
    **TOUCH_TYPES,
    "owner.assigned": OwnerAssigned,
    "sales.accepted": SalesAction,
    "sales.rejected": SalesWithReason,
    "sales.qualified": SalesAction,
    "sales.disqualified": SalesWithReason,
    "lead.nurture_enrolled": NurtureEnrolled,
    "opportunity.opened": OpportunityOpened,
    "deal.won": DealWon,
    "deal.lost": DealLost,
    "campaign.cost_recorded": CampaignCostRecorded,
    "rep.availability_changed": RepAvailabilityChanged,
}

CAMPAIGN_TYPES = frozenset({"campaign.cost_recorded"})
#: Facts about sales reps (subject = rep id), kept on the routing roster.
ROSTER_TYPES = frozenset({"rep.availability_changed"})


@functools.cache
def pii_fields(event_type: str) -> frozenset[str]:
    """Names of the payload fields of `event_type` that hold personal data."""
    model = EVENT_TYPES[event_type]
    return frozenset(
        name
        for name, f in model.model_fields.items()
        if isinstance(f.json_schema_extra, dict) and f.json_schema_extra.get("x-pii")
    )


def present_pii(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The personal fields `data` holds a value for, sorted (none for an unknown type)."""
    if event_type not in EVENT_TYPES:
        return []
    return sorted(f for f in pii_fields(event_type) if data.get(f) is not None)


class Envelope(BaseModel):
    """A CloudEvent whose `data` has been validated against the model of its `type`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=500)
    type: str
    subject: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)

    @field_validator("subject")
    @classmethod
    def _key_not_blank(cls, v: str) -> str:
        """A key of only spaces would name a lead nobody can look up or tell apart."""
        if not v.strip():
            raise PydanticCustomError("blank_key", "a lead key with something besides spaces")
        return v

    @property
    def occurred_at(self) -> datetime:
        return self.time

    @property
    def is_campaign_event(self) -> bool:
        return self.type in CAMPAIGN_TYPES

    @property
    def is_roster_event(self) -> bool:
        return self.type in ROSTER_TYPES

    @property
    def is_lead_event(self) -> bool:
        return not (self.is_campaign_event or self.is_roster_event)


def _expected(err_type: str, ctx: dict[str, Any] | None, msg: str) -> str:
    if err_type == "missing":
        return "a value (field is required)"
    if err_type == "extra_forbidden":
        return "no such field (see schemas/ for the allowed ones)"
    if err_type == "literal_error" and ctx:
        return f"one of {ctx.get('expected')}"
    if err_type == "string_pattern_mismatch" and ctx:
        return f"a string matching {ctx.get('pattern')}"
    if err_type.startswith("datetime") or err_type == "timezone_aware":
        return "an RFC 3339 timestamp with a UTC offset, e.g. 2026-03-03T09:00:00Z"
    return msg[0].lower() + msg[1:] if msg else err_type


def _from_validation(
    exc: ValidationError, *, prefix: str, event_id: str | None, event_type: str | None
) -> InvalidEvent:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or None
    return InvalidEvent(
        f"invalid value ({first['type']})",
        event_id=event_id,
        event_type=event_type,
        field=field,
        expected=_expected(first["type"], first.get("ctx"), first["msg"]),
    )


def validate_event(obj: Any) -> Envelope:
    """Validate an already-decoded JSON object as a CloudEvent of the contract."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not a CloudEvent", expected="a JSON object")
    event_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    event_type = obj.get("type") if isinstance(obj.get("type"), str) else None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise InvalidEvent(
            f"unknown event type {event_type!r}",
            event_id=event_id,
            event_type=event_type,
            field="type",
            expected="one of " + ", ".join(sorted(EVENT_TYPES)),
        )
    try:
        env = Envelope.model_validate(obj)
    except ValidationError as exc:
        raise _from_validation(exc, prefix="", event_id=event_id, event_type=event_type) from None
    model = EVENT_TYPES[env.type]
    try:
        data = model.model_validate(env.data)
    except ValidationError as exc:
        raise _from_validation(exc, prefix="data.", event_id=env.id, event_type=env.type) from None
    clean = data.model_dump(mode="json", exclude_none=True)
    return env.model_copy(update={"data": clean})


def parse_event(raw: bytes | str, *, max_bytes: int = 256 * 1024) -> Envelope:
    """Decode and validate one raw record; raises `InvalidEvent` with a specific reason."""
    if len(raw) > max_bytes:
        raise InvalidEvent(
            f"payload too large ({len(raw)} bytes)", expected=f"at most {max_bytes} bytes"
        )
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"malformed JSON ({exc})", expected="one JSON object") from None
    return validate_event(obj)


def event_json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of a whole CloudEvent of `event_type` (envelope plus its data model)."""
    data_schema = EVENT_TYPES[event_type].model_json_schema()
    envelope = Envelope.model_json_schema()
    props = dict(envelope["properties"])
    props["type"] = {"const": event_type, "title": "Type", "type": "string"}
    defs = data_schema.pop("$defs", {})
    props["data"] = data_schema
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://leadengine.dev/schemas/{event_type}.json",
        "title": event_type,
        "description": (EVENT_TYPES[event_type].__doc__ or "").strip() or None,
        "type": "object",
        "properties": props,
        "required": envelope["required"],
        "additionalProperties": True,
    }
    if defs:
        schema["$defs"] = defs
    if schema["description"] is None:
        del schema["description"]
    return schema
