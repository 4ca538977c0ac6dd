"""The Campaign aggregate: what a campaign cost, per period, as recorded upstream."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE, Recorded
from engine.domain import identity


def campaign_id(key: str) -> UUID:
    return uuid5(NAMESPACE, f"campaign:{key}")


class Campaign(Aggregate):
    """Costs only: touches name campaigns, but a campaign's spend is its own stream."""

    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: dict[identity.EventKey, dict[str, Any]] = {}  # (source, id) -> content
        self.total = Decimal(0)

    @staticmethod
    def create_id(key: str) -> UUID:
        return campaign_id(key)

    def record_cost(
        self,
        *,
        event_id: str,
        source: str,
        occurred_at: datetime,
        campaign: str,
        channel: str,
        amount: Decimal,
        currency: str,
        period_start: date,
        period_end: date,
    ) -> Recorded:
        """Record one cost line; a duplicate when this (source, id) was already recorded.

        Raises `EventConflict` when it was recorded with other content."""
        new = _content(occurred_at, campaign, channel, amount, currency, period_start, period_end)
        known = identity.lookup(self.seen, source, event_id)
        if known is not None:
            identity.check_same(known, new, source=source, event_id=event_id)
            return Recorded.DUPLICATE
        self.trigger_event(
            self.CostRecorded,
            event_id=event_id,
            channel=channel,
            amount=amount,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            source=source,
            occurred_at=occurred_at,
            campaign=campaign,
        )
        return Recorded.ACCEPTED

    class CostRecorded(Aggregate.Event):
        """Version 2 keeps the CloudEvent's source, time and campaign (its identity and the
        content a reused id is compared with); version 1 events read them as None."""

        class_version = 2

        event_id: str
        channel: str
        amount: Decimal
        currency: str
        period_start: date
        period_end: date
        source: str | None
        occurred_at: datetime | None
        campaign: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.update(source=None, occurred_at=None, campaign=None)

        def apply(self, aggregate: Campaign) -> None:
            aggregate.seen[(self.source, self.event_id)] = _content(
                self.occurred_at,
                self.campaign,
                self.channel,
                self.amount,
                self.currency,
                self.period_start,
                self.period_end,
            )
            aggregate.total += self.amount


def _content(
    occurred_at: datetime | None,
    campaign: str | None,
    channel: str,
    amount: Decimal,
    currency: str,
    period_start: date,
    period_end: date,
) -> dict[str, Any]:
    return identity.content(
        "campaign.cost_recorded",
        occurred_at,
        {
            "campaign": identity.NOT_KEPT if campaign is None else campaign,
            "channel": channel,
            "amount": amount,
            "currency": currency,
            "period_start": period_start,
            "period_end": period_end,
        },
    )
