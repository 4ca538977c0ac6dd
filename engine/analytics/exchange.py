"""Amounts in one report currency: converted with the rules' dated rates, or left out and
counted per currency. Nothing here ever adds amounts of two currencies together."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from engine.domain.currency import money
from engine.domain.rules import Rate


class Exchange:
    """Converts into `currency` with the direct rates `from -> currency`: an amount dated `on`
    takes the latest rate whose `since` is on or before `on`; none -> the amount is left out."""

    def __init__(self, currency: str, rates: Iterable[Rate] = ()) -> None:
        self.currency = currency
        table: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
        for r in rates:
            if r.to == currency:
                table[r.from_].append((r.since, r.rate))
        self._table = {c: sorted(pairs) for c, pairs in table.items()}

    def rate(self, currency: str, on: date) -> Decimal | None:
        if currency == self.currency:
            return Decimal(1)
        pairs = self._table.get(currency, [])
        i = bisect.bisect_right([since for since, _ in pairs], on)
        return pairs[i - 1][1] if i else None

    def convert(self, amount: Decimal, currency: str, on: date) -> Decimal | None:
        """`amount` in the report currency, exact (not rounded); None when no rate covers it."""
        rate = self.rate(currency, on)
        if rate is None:
            return None
        return amount if currency == self.currency else amount * rate

    def deal(self, amount: Decimal, currency: str, at: datetime) -> Decimal | None:
        """A deal won `at` in the report currency, at the rate of its UTC date: converted
        amounts are rounded half up to the minor unit, one deal at a time, so every total is a
        sum of the deals as shown."""
        converted = self.convert(amount, currency, at.astimezone(UTC).date())
        if converted is None or currency == self.currency:
            return converted
        return money(converted, self.currency)


@dataclass(slots=True)
class LeftOut:
    """What a report could not put in its currency: per column (`revenue`, `cost`, ...) and
    original currency, how many amounts and how much, never converted."""

    amounts: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, what: str, currency: str, amount: Decimal) -> None:
        key = (what, currency)
        self.amounts[key] = self.amounts.get(key, Decimal(0)) + amount
        self.counts[key] = self.counts.get(key, 0) + 1

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"what": what, "currency": cur, "items": self.counts[(what, cur)],
             "amount": money(self.amounts[(what, cur)], cur)}
            for what, cur in sorted(self.amounts)
        ]  # fmt: skip
