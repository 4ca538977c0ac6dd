"""exact_split against a reference written with exact fractions (largest remainder, ties to the
smaller key), including totals beyond 12 significant digits and weights that are all 0."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.analytics.allocate import exact_split

D = Decimal


def largest_remainder(weights: dict[str, int], units: int) -> dict[str, Decimal]:
    """The textbook method in exact arithmetic: each key its floor, the units left to the
    largest remainders, equal remainders to the smaller key; all-zero weights as all equal."""
    whole = sum(weights.values())
    share = {
        k: Fraction(units * w, whole) if whole else Fraction(units, len(weights))
        for k, w in weights.items()
    }
    floors = {k: s.numerator // s.denominator for k, s in share.items()}
    left = units - sum(floors.values())
    for k in sorted(weights, key=lambda k: (-(share[k] - floors[k]), k))[:left]:
        floors[k] += 1
    return {k: D(v) for k, v in floors.items()}


def test_a_remainder_of_exactly_one_half_is_a_tie_like_any_other() -> None:
    # 0.5 and 1.5: floors 0 and 1, one unit left, equal remainders -> the smaller key
    # (rounding half to even first would give b both units)
    assert exact_split({"b": 3.0, "a": 1.0}, D(2), D(1)) == {"a": D(1), "b": D(1)}
    assert exact_split({"b": 1.0, "a": 3.0}, D(2), D(1)) == {"a": D(2), "b": D(0)}


def test_weights_that_are_all_zero_split_the_total_equally_in_key_order() -> None:
    assert exact_split({"c": 0.0, "a": 0.0, "b": 0.0}, D(2), D(1)) == {
        "a": D(1), "b": D(1), "c": D(0)}  # fmt: skip
    assert exact_split({"y": 0.0, "x": 0.0}, D("0.03"), D("0.01")) == {
        "x": D("0.02"), "y": D("0.01")}  # fmt: skip


def test_a_total_beyond_twelve_significant_digits_stays_exact() -> None:
    # 2,090,697,104,809 units (20.9 billion in cents) over 7:1:4: read at 12 significant digits
    # the three scaled credits added up to 2 units more than the total
    units = 2_090_697_104_809
    got = exact_split({"a": 7.0, "b": 1.0, "c": 4.0}, D(units), D(1))
    assert got == largest_remainder({"a": 7, "b": 1, "c": 4}, units)
    assert got == {"a": D(1_219_573_311_139), "b": D(174_224_758_734), "c": D(696_899_034_936)}


@settings(max_examples=150, deadline=None)
@given(
    weights=st.dictionaries(
        st.sampled_from("abcdef"), st.integers(min_value=0, max_value=10**12 - 1), min_size=1
    ),
    units=st.one_of(st.integers(0, 100), st.integers(10**11, 10**24)),
)
@example(weights={"a": 2, "b": 8}, units=36_897_607_701_713)
@example(weights={"a": 1, "b": 3, "c": 7}, units=5_957_520_747_717)
@example(weights={"a": 2, "b": 2, "c": 5}, units=9_026_421_533_917)
@example(weights={"a": 777_777_777_777, "b": 1, "c": 4}, units=2_090_697_104_809_123_456_789)
# remainders 999,999,999,999 and 1,000,000,000,000 of 1,999,999,999,999: a fraction apart of
# 5e-13, which 12 digits after the point read as a tie (then "a" took the unit "b" is owed)
@example(weights={"a": 999_999_999_999, "b": 1_000_000_000_000}, units=3_999_999_999_999)
def test_exact_split_is_the_largest_remainder_method(weights: dict[str, int], units: int) -> None:
    got = exact_split({k: float(w) for k, w in weights.items()}, D(units), D(1))
    assert got == largest_remainder(weights, units)
    assert sum(got.values()) == units
