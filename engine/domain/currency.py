"""Money as reports give it: a Decimal in the currency's minor unit (ISO 4217 exponent; 2 when
the currency is unknown), so JSON and CSV always read `0.00`, `1234.50`, `1200` (JPY)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 currencies whose minor unit is not 1/100
ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
THREE = "BHD IQD JOD KWD LYD OMR TND"
FOUR = "CLF UYW"
EXPONENTS = {
    code: exp for names, exp in ((ZERO, 0), (THREE, 3), (FOUR, 4)) for code in names.split()
}

#: ISO 4217 "no currency": the key of an amount that arrived without one.
NO_CURRENCY = "XXX"


def minor_unit(currency: str | None) -> Decimal:
    """The smallest amount of `currency`: 0.01 for EUR, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-EXPONENTS.get(currency or "", 2))


def money(amount: Decimal, currency: str | None = None) -> Decimal:
    """`amount` rounded half up to the minor unit of `currency`."""
    return amount.quantize(minor_unit(currency), ROUND_HALF_UP)
