"""The Campaign aggregate: what a campaign cost, per period, as recorded upstream."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from engine.aggregates.lead import NAMESPACE


def campaign_id(key: str) -> UUID:
    return uuid5(NAMESPACE, f"campaign:{key}")


class Campaign(Aggregate):
    """Costs only: touches name campaigns, but a campaign's spend is its own stream."""

    class Started(Aggregate.Created):
        key: str

    def __init__(self, key: str) -> None:
        self.key = key
        self.seen: set[str] = set()
        self.total = Decimal(0)

    @staticmethod
    def create_id(key: str) -> UUID:
        return campaign_id(key)

    def record_cost(
        self,
        *,
        event_id: str,
        channel: str,
        amount: Decimal,
        currency: str,
        period_start: date,
        period_end: date,
    ) -> bool:
        """Record one cost line; False when this CloudEvent id was already recorded."""
        if event_id in self.seen:
            return False
        self.trigger_event(
            self.CostRecorded,
            event_id=event_id,
            channel=channel,
            amount=amount,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
        )
        return True

    class CostRecorded(Aggregate.Event):
        event_id: str
        channel: str
        amount: Decimal
        currency: str
        period_start: date
        period_end: date

        def apply(self, aggregate: Campaign) -> None:
            aggregate.seen.add(self.event_id)
            aggregate.total += self.amount
