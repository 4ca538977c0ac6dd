"""The event contract: CloudEvents 1.0 (structured JSON mode), one pydantic model per `type`.

Upstream systems send these; `parse_event` turns raw bytes into a validated `Envelope` or raises
`InvalidEvent` naming the event id, the field and what was expected, and nothing else. What it
accepts, storage and every projection can hold (`engine.limits`, docs/contract.md). Fields
marked PII carry `"x-pii": true` in their JSON Schema so the store can treat them with care.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from engine.domain import limits
from engine.domain.errors import InvalidEvent

#: what the contract does with `data` fields its model does not name (rules `contract`)
UnknownFields = Literal["keep", "reject"]
PII: dict[str, Any] = {"x-pii": True}
#: no string may hold U+0000 (JSON Schema side of `limits.check_strings`)
NO_NUL = "^[^\\u0000]*$"
#: a non-blank key: at least one character that is not white space
NOT_BLANK = r"\S"


def _money_schema(limit: Decimal, decimals: int) -> dict[str, Any]:
    digits = len(str(int(limit))) - 1
    return {
        "anyOf": [
            {"type": "number", "minimum": 0, "exclusiveMaximum": int(limit)},
            {"type": "string", "pattern": f"^[0-9]{{1,{digits}}}(\\.[0-9]{{1,{decimals}}})?$"},
        ],
        "description": f"Decimal >= 0 and < {limit:.0e}, at most {decimals} decimals.",
    }


#: an amount the read model stores exactly: numeric(17,2)
Money = Annotated[
    Decimal,
    Field(ge=0, lt=limits.AMOUNT_LIMIT, decimal_places=limits.AMOUNT_DECIMALS, allow_inf_nan=False),
    WithJsonSchema(_money_schema(limits.AMOUNT_LIMIT, limits.AMOUNT_DECIMALS)),
]
#: a company's yearly revenue: not a read-model column, bounded like an amount but wider
Revenue = Annotated[
    Decimal,
    Field(ge=0, lt=Decimal(10) ** 18, decimal_places=2, allow_inf_nan=False),
    WithJsonSchema(_money_schema(Decimal(10) ** 18, 2)),
]
#: a count the read model stores as int4
Count = Annotated[int, Field(ge=0, le=limits.INT_MAX)]
#: a calendar date as a YYYY-MM-DD string in the documented range
Day = Annotated[
    date,
    BeforeValidator(limits.check_date),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date",
            "description": f"YYYY-MM-DD, {limits.DATE_MIN} to {limits.DATE_MAX}.",
        }
    ),
]


class Data(BaseModel):
    """Base of every payload. The model itself refuses unknown fields (a typo in a known field
    never passes as a new one); in `keep` mode `validate_event` sets them aside first."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int = Field(
        default=1, ge=1, le=limits.INT_MAX, description="Version of this payload's schema."
    )


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
    employees: Count | None = None
    annual_revenue: Revenue | None = None
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
    duration_seconds: Count | None = None
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
    amount: Money
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
    capacity: Count | None = Field(default=None, description="Most open leads at once.")
    reason: str | None = Field(default=None, max_length=500)


class CampaignCostRecorded(Amount):
    campaign: str = Field(min_length=1, max_length=200)
    channel: str = Field(min_length=1, max_length=100)
    period_start: Day
    period_end: Day


#: an account's business domain: lower-case labels, a dot, no scheme or path
DOMAIN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
#: an account id as the CRM keys it (also the `account` attribute of lead events)
ACCOUNT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class AccountUpdated(Data):
    """An account's firmographics as the CRM holds them now (subject = the account id).

    Every field given replaces the stored one; a field left out keeps its stored value.
    `domains` replaces the whole list. Matching and account scores follow (docs/accounts.md)."""

    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=NOT_BLANK)
    domains: tuple[Annotated[str, Field(max_length=253, pattern=DOMAIN)], ...] | None = Field(
        default=None, max_length=50, description="Business e-mail/web domains, lower case."
    )
    industry: str | None = Field(default=None, max_length=100)
    employees: Count | None = None
    annual_revenue: Revenue | None = None
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2"
    )
    owner: str | None = Field(default=None, min_length=1, max_length=200, pattern=NOT_BLANK)
    tier: int | None = Field(
        default=None, ge=1, le=9, description="Target-list tier: 1 is the most wanted."
    )


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
    "account.updated": AccountUpdated,
}


class IdentityLinked(Data):
    """An alias key (the CloudEvent's `subject`: a cookie, device or anonymous id) is the person
    the known key `to` names. Facts stay under the key they arrived with; the identity map
    (docs/identity.md) makes both one person."""

    to: str = Field(
        min_length=1, max_length=200, pattern=NOT_BLANK, json_schema_extra=PII,
        description="The known lead key the subject belongs to (not the subject itself).",
    )  # fmt: skip
    reason: str | None = Field(default=None, max_length=500)


class LeadMerged(Data):
    """Upstream says the lead `subject` (the loser) and `winner` are one person."""

    winner: str = Field(
        min_length=1, max_length=200, pattern=NOT_BLANK, json_schema_extra=PII,
        description="The lead key that names the person from now on (not the subject itself).",
    )  # fmt: skip
    by: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    reason: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)


class LeadUnmerged(LeadMerged):
    """Undo a wrong merge (or link) of `subject` into `winner`: both are two people again,
    exactly as if the merge had never happened."""


IDENTITY_TYPES: dict[str, type[Data]] = {
    "identity.linked": IdentityLinked,
    "lead.merged": LeadMerged,
    "lead.unmerged": LeadUnmerged,
}
#: the data field of each identity event that names the other key
IDENTITY_TARGET = {"identity.linked": "to", "lead.merged": "winner", "lead.unmerged": "winner"}
EVENT_TYPES.update(IDENTITY_TYPES)

CAMPAIGN_TYPES = frozenset({"campaign.cost_recorded"})
#: Facts about sales reps (subject = rep id), kept on the routing roster.
ROSTER_TYPES = frozenset({"rep.availability_changed"})
#: Facts about accounts (subject = account id), kept on the account's own stream.
ACCOUNT_TYPES = frozenset({"account.updated"})


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
    id: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    source: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    type: str
    subject: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    time: Annotated[
        AwareDatetime,
        BeforeValidator(limits.check_time),
        WithJsonSchema(
            {
                "type": "string",
                "format": "date-time",
                "description": (
                    f"RFC 3339 with a UTC offset, from {limits.TIME_MIN:%Y-%m-%d} (inclusive) "
                    f"to {limits.TIME_MAX:%Y-%m-%d} (exclusive)."
                ),
            }
        ),
    ]
    account: str | None = Field(
        default=None,
        pattern=ACCOUNT_ID,
        description="Extension attribute: the CRM account this lead belongs to (lead events).",
    )
    datacontenttype: str | None = Field(default=None, max_length=200)
    dataschema: str | None = Field(default=None, max_length=2000)
    data: dict[str, Any]
    #: unknown `data` fields and extension attributes kept in `keep` mode (see `kept`)
    _kept: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def kept(self) -> dict[str, dict[str, Any]]:
        """What the contract does not know but kept: `{"data": {...}, "attributes": {...}}`,
        each present only when not empty. Personal data by default; never read by rules."""
        return self._kept

    @property
    def unknown_count(self) -> int:
        """How many unknown fields (data fields plus extension attributes) were kept."""
        return sum(len(v) for v in self._kept.values())

    @field_validator("time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return limits.check_time_range(v)

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
    def is_account_event(self) -> bool:
        return self.type in ACCOUNT_TYPES

    @property
    def is_lead_event(self) -> bool:
        return not (self.is_campaign_event or self.is_roster_event or self.is_account_event)


def _expected(err_type: str, ctx: dict[str, Any] | None, msg: str) -> str:
    if err_type == "missing":
        return "a value (field is required)"
    if err_type == "extra_forbidden":
        return "no such field (see schemas/ for the allowed ones)"
    if err_type == "literal_error" and ctx:
        return f"one of {ctx.get('expected')}"
    if err_type == "string_pattern_mismatch" and ctx and ctx.get("pattern") == NOT_BLANK:
        return "a value that is not blank (something besides spaces)"
    if err_type == "string_pattern_mismatch" and ctx:
        return f"a string matching {ctx.get('pattern')}"
    if err_type.startswith("datetime") or err_type == "timezone_aware":
        return "an RFC 3339 timestamp with a UTC offset, e.g. 2026-03-03T09:00:00Z"
    if err_type == "value_error" and msg.startswith("Value error, time"):
        return (
            "an RFC 3339 timestamp string with a UTC offset, from "
            f"{limits.TIME_MIN:%Y-%m-%d} (inclusive) to {limits.TIME_MAX:%Y-%m-%d} (exclusive)"
        )
    return msg[0].lower() + msg[1:] if msg else err_type


def _from_validation(
    exc: ValidationError, *, prefix: str, event_id: str | None, event_type: str | None
) -> InvalidEvent:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or None
    detail = first["type"]
    if detail == "value_error":
        detail = first["msg"].removeprefix("Value error, ")
    return InvalidEvent(
        f"invalid value ({detail})",
        event_id=event_id,
        event_type=event_type,
        field=field,
        expected=_expected(first["type"], first.get("ctx"), first["msg"]),
    )


@functools.cache
def _field_names(model: type[Data]) -> frozenset[str]:
    return frozenset(model.model_fields)


def _split(model: type[Data], data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`data` as the fields `model` names and the rest."""
    names = _field_names(model)
    if names.issuperset(data):
        return dict(data), {}
    known = {k: v for k, v in data.items() if k in names}
    return known, {k: v for k, v in data.items() if k not in names}


def validate_event(
    obj: Any, *, unknown_fields: UnknownFields = "keep", strings_checked: bool = False
) -> Envelope:
    """Validate an already-decoded JSON object as a CloudEvent of the contract.

    Known fields are always validated strictly. Unknown `data` fields are kept aside
    (`Envelope.kept`) in `keep` mode and refused, field named, in `reject` mode. Extension
    attributes are never refused (CloudEvents); `keep` mode keeps them too. `strings_checked`:
    the caller knows no string in `obj` is unsafe and none nests too deep (`parse_event`)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not a CloudEvent", expected="a JSON object")
    if not strings_checked:
        limits.check_strings(obj)
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
    if env.account is not None and not env.is_lead_event:
        raise InvalidEvent(
            f"attribute 'account' on a {env.type} event",
            event_id=env.id,
            event_type=env.type,
            field="account",
            expected="no 'account' attribute (only lead events name their account)",
        )
    model = EVENT_TYPES[env.type]
    known, unknown = _split(model, env.data) if unknown_fields == "keep" else (env.data, {})
    try:
        data = model.model_validate(known)
    except ValidationError as exc:
        raise _from_validation(exc, prefix="data.", event_id=env.id, event_type=env.type) from None
    clean = data.model_dump(mode="json", exclude_none=True)
    _check_other_key(env.type, env.id, env.subject, clean)
    # `env` was made above and is not shared: its data replaced in place, where model_copy
    # copied the whole model (2.7 of 6.6 s of validating in a profile of ingest)
    env.__dict__["data"] = clean
    out = env
    attributes = dict(env.model_extra or {}) if unknown_fields == "keep" else {}
    out._kept = {k: v for k, v in (("data", unknown), ("attributes", attributes)) if v}
    return out


def _check_other_key(event_type: str, event_id: str, subject: str, data: dict[str, Any]) -> None:
    """An identity event joins two keys: naming the subject twice joins nothing (refused)."""
    field = IDENTITY_TARGET.get(event_type)
    if field is not None and data[field] == subject:
        raise InvalidEvent(
            f"data.{field} names the subject itself",
            event_id=event_id,
            event_type=event_type,
            field=f"data.{field}",
            expected="another lead key than the CloudEvent's subject",
        )


def parse_event(
    raw: bytes | str, *, max_bytes: int = 256 * 1024, unknown_fields: UnknownFields = "keep"
) -> Envelope:
    """Decode and validate one raw record; raises `InvalidEvent` with a specific reason, and
    nothing else, whatever the bytes (a dead letter, never an exception out of the batch)."""
    if len(raw) > max_bytes:
        raise InvalidEvent(
            f"payload too large ({len(raw)} bytes)", expected=f"at most {max_bytes} bytes"
        )
    try:
        text = limits.decode_text(raw)
        limits.check_shape(text)
        try:
            obj = limits.loads(text)
        except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a huge float
            raise InvalidEvent(f"malformed JSON ({exc})", expected="one JSON object") from None
        # check_shape bounded the depth; strings_safe: no string can be unsafe (one text scan)
        return validate_event(
            obj, unknown_fields=unknown_fields, strings_checked=limits.strings_safe(text)
        )
    except InvalidEvent:
        raise
    except Exception as exc:  # a parser or validator failure no check above foresaw
        raise InvalidEvent(
            f"unreadable record ({exc.__class__.__name__}: {str(exc)[:200]!r})",
            expected="one JSON object of the contract (see schemas/)",
        ) from None


def event_json_schema(event_type: str, unknown_fields: UnknownFields = "keep") -> dict[str, Any]:
    """The JSON Schema of a whole CloudEvent of `event_type` (envelope plus its data model),
    as the contract reads it under the rules' `contract.unknown_fields`."""
    data_schema = EVENT_TYPES[event_type].model_json_schema()
    if unknown_fields == "keep":
        data_schema["additionalProperties"] = True
        data_schema["$comment"] = (
            "Fields not named here are kept with the fact as personal data (sealed with the "
            "lead's key, gone after forget), counted, and never read by rules; with rules "
            "`contract: {unknown_fields: reject}` they are refused."
            if event_type not in CAMPAIGN_TYPES | ROSTER_TYPES | ACCOUNT_TYPES
            else "Fields not named here are counted and dropped (not stored, never read); "
            "with rules `contract: {unknown_fields: reject}` they are refused."
        )
    envelope = Envelope.model_json_schema()
    props = dict(envelope["properties"])
    props["type"] = {"const": event_type, "title": "Type", "type": "string"}
    if event_type in CAMPAIGN_TYPES | ROSTER_TYPES | ACCOUNT_TYPES:
        props["account"] = False  # only lead events name their account
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
    _no_nul(schema)
    schema["$comment"] = (
        f"No string anywhere (extension attributes too) holds U+0000 or an unpaired UTF-16 "
        f"surrogate; arrays and objects nest at most {limits.MAX_DEPTH} deep; number literals "
        f"have at most {limits.MAX_NUMBER_CHARS} characters. See docs/contract.md."
    )
    return schema


def _no_nul(node: Any) -> None:
    """Give every free-text string schema (no pattern, format or const) the NO_NUL pattern."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "format", "const", "enum"} & set(node):
            node["pattern"] = NO_NUL
        for value in node.values():
            _no_nul(value)
    elif isinstance(node, list):
        for value in node:
            _no_nul(value)
