"""An account's profile, folded from its `account.updated` facts independent of arrival order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.domain.rules import ACCOUNT_ATTRIBUTES

#: the firmographic fields of `account.updated`, in contract order
FIELDS = (
    "name",
    "domains",
    "industry",
    "employees",
    "annual_revenue",
    "country",
    "owner",
    "tier",
)

CENTS = Decimal("0.01")
#: one update as kept on the Account aggregate: (time, source, event id, data)
Update = tuple[datetime, str, str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AccountProfile:
    account_id: str
    name: str | None = None
    domains: tuple[str, ...] = ()
    industry: str | None = None
    employees: int | None = None
    annual_revenue: Decimal | None = None
    country: str | None = None
    owner: str | None = None
    tier: int | None = None
    updated_at: datetime | None = None  # the latest update's time

    def attrs(self) -> dict[str, Any]:
        """What account fit rules read (the conditions of engine.rules)."""
        return {name: getattr(self, name) for name in ACCOUNT_ATTRIBUTES}


def fold(account_id: str, updates: Iterable[Update]) -> AccountProfile:
    """Each field from the latest-dated update that names it; equal times are ordered by
    (source, id), so the result never depends on the order updates arrived in."""
    values: dict[str, Any] = {}
    latest: datetime | None = None
    for at, _source, _id, data in sorted(updates, key=lambda u: (u[0], u[1], u[2])):
        latest = at
        for name in FIELDS:
            if name in data and data[name] is not None:
                values[name] = data[name]
    if "domains" in values:
        values["domains"] = tuple(sorted({d.lower() for d in values["domains"]}))
    if "annual_revenue" in values:
        # two decimals always, as the read model holds it (explanations read the same)
        values["annual_revenue"] = Decimal(str(values["annual_revenue"])).quantize(CENTS)
    return AccountProfile(account_id=account_id, updated_at=latest, **values)
