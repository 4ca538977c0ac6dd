"""Building CloudEvents for tests."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain.contract import Envelope, validate_event

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def raw(
    type_: str,
    subject: str = "lead-1",
    data: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
    days: float = 0,
    id: str | None = None,
) -> dict[str, Any]:
    moment = (at or T0) + timedelta(days=days)
    return {
        "specversion": "1.0",
        "id": id or f"ev-{next(_ids)}",
        "source": "urn:test",
        "type": type_,
        "subject": subject,
        "time": moment.isoformat().replace("+00:00", "Z"),
        "data": data if data is not None else {},
    }


def ev(
    type_: str, subject: str = "lead-1", data: dict[str, Any] | None = None, **kw: Any
) -> Envelope:
    return validate_event(raw(type_, subject, data, **kw))


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def captured(subject: str = "lead-1", **kw: Any) -> Envelope:
    return ev("lead.captured", subject, {"email": f"{subject}@acme.example", "country": "US"}, **kw)


def icp_profile(subject: str = "lead-1", **kw: Any) -> Envelope:
    data = {"industry": "software", "employees": 800, "seniority": "vp"}
    return ev("lead.profile_updated", subject, data, **kw)


def touch(type_: str, subject: str = "lead-1", **data: Any) -> Envelope:
    days = data.pop("days", 0)
    at = data.pop("at", None)
    data.setdefault("channel", "web")
    return ev(type_, subject, data, days=days, at=at)


def won_deals(key: str, channel: str, deals: list[tuple[float, str, str]]) -> list[dict[str, Any]]:
    """A lead captured, one page view on `channel`, then a `deal.won` per (day, amount, currency):
    the money tests' journeys (issue 15's several-currency cases)."""
    events = [
        raw("lead.captured", key, {"email": f"{key.lower()}@acme.example"}),
        raw("touch.page_viewed", key, {"channel": channel}, days=0.5),
    ]
    for day, amount, currency in deals:
        events.append(raw("deal.won", key, {"amount": amount, "currency": currency}, days=day))
    return events
