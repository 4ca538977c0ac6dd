"""Facts as the aggregate keeps them, and the profile they add up to at a moment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PROFILE_TYPES = frozenset({"lead.captured", "lead.profile_updated"})
#: Attributes of lead.captured that describe the company or role, not the person.
CAPTURED_PROFILE_FIELDS = ("company", "title", "country")


@dataclass(frozen=True, slots=True)
class Fact:
    """One accepted upstream event: `occurred_at` is when it happened, `seq` its arrival order.

    `extra` is what the contract did not know but kept (`Envelope.kept`): personal data, gone
    after forget, and never read by rules (they read `data` only)."""

    event_id: str
    type: str
    source: str
    occurred_at: datetime
    data: Mapping[str, Any]
    seq: int = 0
    extra: Mapping[str, Any] | None = None

    @property
    def is_touch(self) -> bool:
        return self.type.startswith("touch.")


def chronological(facts: Iterable[Fact], as_of: datetime | None = None) -> list[Fact]:
    """Facts that had happened by `as_of`, ordered by when they happened (ties: arrival)."""
    chosen = [f for f in facts if as_of is None or f.occurred_at <= as_of]
    chosen.sort(key=lambda f: (f.occurred_at, f.seq))
    return chosen


def email_domain(email: str | None) -> str | None:
    """The e-mail's domain as everything compares it (fit rules, the stored `email_domain`,
    account matching): `ascii_domain` of what follows the last `@`; None when there is none."""
    if not email or "@" not in email:
        return None
    return ascii_domain(email.rsplit("@", 1)[1]) or None


def ascii_domain(domain: str) -> str:
    """Lower case, no surrounding blanks or trailing dot, international labels in their ASCII
    (IDNA 2003) form, as accounts' domains are given (the contract's pattern is ASCII); a
    domain IDNA cannot encode is kept as it is (it matches no account's)."""
    domain = _trim(domain.lower())
    if domain.isascii():
        return domain
    try:  # IDNA maps some characters to a dot (an ideographic full stop): trimmed again
        return _trim(domain.encode("idna").decode("ascii"))
    except UnicodeError:
        return domain


def _trim(domain: str) -> str:
    """No leading blanks, no trailing dots or blanks in any mix (`acme.com. ` -> `acme.com`):
    trimming twice changes nothing, so a kept domain compares as a fresh one."""
    return domain.lstrip().rstrip(". \t\r\n\f\v")


#: Where a fact's payload names the personal fields it no longer holds (erased or stripped).
ERASED_KEY = "_erased"


def strip_pii(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` without the fields the contract marks personal, named under `_erased`.

    The email's domain is kept (as `email_domain`): fit rules use it, so scores replay the
    same after the address itself is gone."""
    from engine.domain.contract import EVENT_TYPES, pii_fields, present_pii

    fields = pii_fields(event_type) if event_type in EVENT_TYPES else frozenset()
    present = present_pii(event_type, data)
    if not present:
        return dict(data)
    out = {k: v for k, v in data.items() if k not in fields}
    if "email" in present and out.get("email_domain") is None:
        out["email_domain"] = email_domain(data["email"])
    out[ERASED_KEY] = sorted({*out.get(ERASED_KEY, ()), *present})
    return out


def profile_of(
    facts: Iterable[Fact], as_of: datetime | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Firmographic and role attributes known by `as_of`, and which event set each one.

    Later facts (by occurrence) overwrite earlier ones. The email itself is not a profile
    attribute; only its domain is, so fit scoring never needs the person's address.
    """
    attrs: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for fact in chronological((f for f in facts if f.type in PROFILE_TYPES), as_of):
        for key, value in profile_values(fact).items():
            if value is not None:
                attrs[key] = value
                origin[key] = fact.event_id
    return attrs, origin


def profile_values(fact: Fact) -> dict[str, Any]:
    """What one profile fact says of the profile (`profile_of` lays them over each other in
    event time; a None value says nothing)."""
    if fact.type == "lead.captured":
        values = {k: fact.data.get(k) for k in CAPTURED_PROFILE_FIELDS}
        values["email_domain"] = email_domain(fact.data.get("email")) or fact.data.get(
            "email_domain"
        )
        return values
    return {k: v for k, v in fact.data.items() if k != "schema_version"}
