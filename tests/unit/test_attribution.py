"""Attribution models on small paths with hand-computed credits, and exact sums for any journey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics.attribution import MODELS, attribute, side_by_side
from engine.analytics.journeys import NO_TOUCH, Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import ReportError, build_paths
from engine.domain.rules import Attribution

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = Attribution()
D = Decimal


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def journey(
    key: str,
    touches: list[tuple[float, str]],
    *,
    captured: float | None = 0.0,
    opportunity: float | None = None,
    won: float | None = None,
    amount: str = "1000",
    campaign: str | None = None,
) -> Journey:
    j = Journey(key)
    for seq, (day, channel) in enumerate(touches):
        j.touches.append(
            Touchpoint(at(day), seq, "touch.page_viewed", channel, campaign or f"{channel}-c")
        )
    if captured is not None:
        j.moves.append(Move(at(captured), "anonymous", "lead", "lead.captured"))
        j.milestones.append(Milestone(at(captured), "lead.captured"))
    if opportunity is not None:
        j.moves.append(Move(at(opportunity), "lead", "opportunity", "opportunity.opened"))
    if won is not None:
        j.moves.append(Move(at(won), "opportunity", "customer", "deal.won"))
        j.milestones.append(Milestone(at(won), "deal.won", amount=D(amount), currency="USD"))
    j.sort()
    return j


def credits(journeys: list[Journey], model: str, **kw: object) -> dict[str, Decimal]:
    by = str(kw.pop("by", "channel"))
    paths = build_paths(Dataset(journeys, []), CFG, **kw)  # type: ignore[arg-type]
    return attribute(paths, model, by, CFG).credits


ONE = [journey("l1", [(1, "ads")], opportunity=2, won=3)]
TWO = [journey("l1", [(0, "ads"), (7, "email")], captured=0, opportunity=7, won=7)]
FIVE = [
    journey(
        "l1",
        [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")],
        captured=1.5,  # the lead was created after touch b
        opportunity=3,  # ... the opportunity at touch d
        won=5,
    )
]


@pytest.mark.parametrize("model", MODELS)
def test_one_touch_gets_everything(model: str) -> None:
    assert credits(ONE, model) == {"ads": D("1.0000")}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("first_touch", {"ads": "1.0000", "email": "0.0000"}),
        ("last_touch", {"ads": "0.0000", "email": "1.0000"}),
        ("linear", {"ads": "0.5000", "email": "0.5000"}),
        ("position_based", {"ads": "0.5000", "email": "0.5000"}),
        # 2^(-7/7) = 0.5 for ads, 1 for email: 1/3 and 2/3
        ("time_decay", {"ads": "0.3333", "email": "0.6667"}),
        # first + lead creation on ads (0.6), opportunity on email (0.3); spread has nobody
        ("w_shaped", {"ads": "0.6667", "email": "0.3333"}),
        # ads: first + lead creation (0.45); email: opportunity + close (0.45)
        ("full_path", {"ads": "0.5000", "email": "0.5000"}),
    ],
)
def test_two_touches(model: str, expected: dict[str, str]) -> None:
    assert credits(TWO, model) == {k: D(v) for k, v in expected.items()}


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("linear", {"a": "0.2", "b": "0.2", "c": "0.2", "d": "0.2", "e": "0.2"}),
        ("position_based", {"a": "0.4", "b": "0.0667", "c": "0.0667", "d": "0.0666", "e": "0.4"}),
        ("w_shaped", {"a": "0.3", "b": "0.3", "c": "0.05", "d": "0.3", "e": "0.05"}),
        ("full_path", {"a": "0.225", "b": "0.225", "c": "0.1", "d": "0.225", "e": "0.225"}),
    ],
)
def test_five_touches_milestones(model: str, expected: dict[str, str]) -> None:
    assert credits(FIVE, model) == {k: D(v).quantize(D("0.0001")) for k, v in expected.items()}


def test_w_shaped_without_an_opportunity_scales_the_other_shares() -> None:
    # conversion at mql: no opportunity milestone; 0.3 / 0.3 / 0.1 scaled to 3/7, 3/7, 1/7.
    # Rounded to 0.0001 by largest remainder: 0.42857.. twice rounds up, 0.14285.. down.
    j = journey("l1", [(0, "a"), (1, "b"), (2, "c")], captured=1)
    j.moves.append(Move(at(2), "lead", "mql", "score"))
    j.sort()
    got = credits([j], "w_shaped", conversion="mql")
    assert got == {"a": D("0.4286"), "b": D("0.4286"), "c": D("0.1428")}


def test_repeated_channels_add_up() -> None:
    j = journey("l1", [(0, "email"), (1, "web"), (2, "email")], opportunity=2, won=3)
    assert credits([j], "linear") == {"email": D("0.6667"), "web": D("0.3333")}
    assert credits([j], "first_touch") == {"email": D("1.0000"), "web": D("0.0000")}


def test_ties_in_time_follow_arrival_order() -> None:
    j = Journey("l1")
    j.touches += [
        Touchpoint(at(0), 2, "touch.page_viewed", "second"),
        Touchpoint(at(0), 1, "touch.page_viewed", "first"),
    ]
    j.moves += [Move(at(0), "anonymous", "customer", "deal.won")]
    j.sort()
    assert credits([j], "first_touch")["first"] == D(1)
    assert credits([j], "last_touch")["second"] == D(1)


def test_markov_removal_effect_by_hand() -> None:
    # start->A 2/3, start->B 1/3, A->B 1/2, A->null 1/2, B->conv 1: P = 2/3.
    # Without A: P = 1/3, effect 1/2. Without B: P = 0, effect 1. Credits 2 * (1/3, 2/3).
    js = [
        journey("l1", [(0, "A"), (1, "B")], opportunity=1, won=2),
        journey("l2", [(0, "A")]),
        journey("l3", [(0, "B")], opportunity=1, won=2),
    ]
    assert credits(js, "markov") == {"A": D("0.6667"), "B": D("1.3333")}


def test_shapley_by_hand() -> None:
    # v(A) = 1/2, v(B) = 0, v(AB) = 1. Path {A,B}: phi_A = (0.5 + 1)/2, phi_B = (0 + 0.5)/2.
    js = [
        journey("l1", [(0, "A")], opportunity=1, won=2),
        journey("l2", [(0, "A")]),
        journey("l3", [(0, "B")]),
        journey("l4", [(0, "A"), (1, "B")], opportunity=1, won=2),
    ]
    assert credits(js, "shapley") == {"A": D("1.7500"), "B": D("0.2500")}


def test_revenue_and_no_touch_conversions() -> None:
    js = [
        journey("l1", [(0, "ads"), (1, "email")], opportunity=1, won=2, amount="1000.01"),
        journey("l2", [], opportunity=1, won=2, amount="50"),
    ]
    got = credits(js, "linear", value="revenue")
    assert got == {"ads": D("500.01"), "email": D("500.00"), NO_TOUCH: D("50")}


def test_lookback_window_and_period() -> None:
    cfg = Attribution(lookback_days=3)
    j = journey("l1", [(0, "old"), (8, "recent")], opportunity=9, won=10)
    paths = build_paths(Dataset([j], []), cfg)
    assert attribute(paths, "linear", "channel", cfg).credits == {"recent": D(1)}
    later = build_paths(Dataset([j], []), CFG, start=at(11))
    assert later.converting == [] and later.total == 0


def test_unknown_model_and_mixed_currencies_are_clear_errors() -> None:
    paths = build_paths(Dataset(ONE, []), CFG)
    with pytest.raises(ReportError, match="unknown attribution model 'magic'"):
        attribute(paths, "magic", "channel", CFG)
    eur = journey("l2", [(0, "ads")], opportunity=1, won=2)
    eur.milestones[-1] = Milestone(at(2), "deal.won", amount=D(5), currency="EUR")
    with pytest.raises(ReportError, match="several currencies"):
        build_paths(Dataset([*ONE, eur], []), CFG, value="revenue")
    only_eur = build_paths(Dataset([*ONE, eur], []), CFG, value="revenue", currency="EUR")
    assert only_eur.total == D(5)


def test_side_by_side_has_a_total_row() -> None:
    paths = build_paths(Dataset(TWO, []), CFG)
    rows = side_by_side([attribute(paths, m, "channel", CFG) for m in MODELS])
    assert rows[-1]["channel"] == "TOTAL"
    assert all(rows[-1][m] == 1 for m in MODELS)
    # exact per-channel credits by hand (see test_two_touches); markov and shapley split the one
    # two-channel path evenly: removing either channel (or either alone) converts nothing
    ads = {"first_touch": "1", "last_touch": "0", "linear": "0.5", "position_based": "0.5"}
    ads |= {"w_shaped": "0.6667", "full_path": "0.5", "time_decay": "0.3333"}
    ads |= {"markov": "0.5", "shapley": "0.5"}
    assert set(ads) == set(MODELS)
    assert rows[0] == {"channel": "ads"} | {m: D(v).quantize(D("0.0001")) for m, v in ads.items()}
    email = {m: (D(1) - D(v)).quantize(D("0.0001")) for m, v in ads.items()}
    assert rows[1] == {"channel": "email"} | email
    assert len(rows) == 3


CHANNELS = st.sampled_from(["ads", "email", "web", "social", "events", "partner"])
JOURNEY = st.tuples(
    st.lists(st.tuples(st.integers(0, 40), CHANNELS), max_size=8),
    st.sampled_from([None, 5, 20, 45]),  # day of the win, if any
    st.integers(0, 100_000),  # cents
)


@settings(max_examples=60, deadline=None)
@given(st.lists(JOURNEY, min_size=1, max_size=25), st.sampled_from(["conversions", "revenue"]))
def test_every_model_sums_to_the_conversions(raw: list[tuple], value: str) -> None:
    journeys = [
        journey(
            f"l{i}",
            sorted(touches),
            opportunity=None if won is None else won - 1,
            won=won,
            amount=str(D(cents) / 100),
        )
        for i, (touches, won, cents) in enumerate(raw)
    ]
    paths = build_paths(Dataset(journeys, []), CFG, value=value)
    expected = len(paths.converting) if value == "conversions" else paths.total
    for by in ("channel", "campaign"):
        for model in MODELS:
            result = attribute(paths, model, by, CFG)
            assert sum(result.credits.values(), D(0)) == expected, (model, by)


def test_sampled_shapley_matches_exact_values_on_a_five_channel_path() -> None:
    from itertools import combinations

    from engine.analytics.shapley import shares

    members = ["A", "B", "C", "D", "E"]
    weight = {"A": 0.30, "B": 0.05, "C": 0.10, "D": 0.0, "E": 0.15}
    v: dict[frozenset[str], float] = {}
    for size in range(1, 6):
        for combo in combinations(members, size):
            s = frozenset(combo)
            synergy = 0.2 if {"B", "C"} <= s else 0.0  # an interaction, so shares are not additive
            v[s] = sum(weight[m] for m in s) + synergy
    path = frozenset(members)
    exact = shares(path, v, exact_max=12)
    sampled = shares(path, v, exact_max=2, samples=4000)  # 5 keys > 2: the sampled code runs
    assert sum(sampled.values()) == pytest.approx(1.0, abs=1e-9)  # efficiency holds per ordering
    for m in members:
        assert sampled[m] == pytest.approx(exact[m], abs=0.02), m
    # by hand: A 0.30, B 0.05 + 0.10, C 0.10 + 0.10, D 0, E 0.15 over v(all) = 0.80
    assert exact == pytest.approx(
        {"A": 0.375, "B": 0.1875, "C": 0.25, "D": 0.0, "E": 0.1875}, abs=1e-9
    )


def test_shapley_shares_on_a_sparse_game_by_hand() -> None:
    """v holds only the coalitions some journey had: the others are worth 0. Three channels,
    v({a}) = 0.2, v({a, b}) = 0.5, v({a, b, c}) = 0.8, everything else 0. Marginal gains over
    the six orderings abc, acb, bac, bca, cab, cba: a 0.2, 0.2, 0.5, 0.8, 0, 0.8 (sum 2.5);
    b 0.3, 0.8, 0, 0, 0.8, 0 (1.9); c 0.3, -0.2, 0.3, 0, 0, 0 (0.4); each / 6, / v = 0.8."""
    from itertools import permutations

    from engine.analytics.shapley import shares

    a, b, c = "a", "b", "c"
    v = {frozenset({a}): 0.2, frozenset({a, b}): 0.5, frozenset({a, b, c}): 0.8}
    phi = dict.fromkeys((a, b, c), 0.0)
    for order in permutations((a, b, c)):
        before: frozenset[str] = frozenset()
        for member in order:
            phi[member] += v.get(before | {member}, 0.0) - v.get(before, 0.0)
            before = before | {member}
    assert phi == pytest.approx({a: 2.5, b: 1.9, c: 0.4}, abs=1e-12)  # the reference = by hand
    expected = {a: 2.5 / 6 / 0.8, b: 1.9 / 6 / 0.8, c: 0.4 / 6 / 0.8}
    exact = shares(frozenset({a, b, c}), v)
    assert exact == pytest.approx(expected, abs=1e-12)
    assert sum(exact.values()) == pytest.approx(1.0, abs=1e-12)
    # the boundary: 3 channels with exact_max=3 is exact; with exact_max=2 it is sampled (one
    # ordering only, so it differs from the exact values)
    assert shares(frozenset({a, b, c}), v, exact_max=3, samples=1) == exact
    one = shares(frozenset({a, b, c}), v, exact_max=2, samples=1)
    assert one != pytest.approx(exact, abs=1e-6) and sum(one.values()) == pytest.approx(1.0)
    sampled = shares(frozenset({a, b, c}), v, exact_max=2, samples=6000)
    assert sampled == pytest.approx(expected, abs=0.02)


def test_shapley_shares_split_equally_when_the_set_itself_is_worth_nothing() -> None:
    from engine.analytics.shapley import shares

    v = {frozenset({"a"}): 0.5}  # {"a", "b"} absent: worth 0
    assert shares(frozenset({"a", "b"}), v) == {"a": 0.5, "b": 0.5}
    assert shares(frozenset({"a", "b", "c"}), {}) == dict.fromkeys("abc", 1 / 3)
    assert shares(frozenset({"a"}), {}) == {"a": 1.0}


def test_markov_chain_with_loops_matches_value_iteration() -> None:
    """Self-loops (A -> A) and cycles (A -> B -> A): the solved probabilities equal those
    reached by iterating x = b + Q x (an independent way to the same fixed point)."""
    from engine.analytics.markov import CONVERSION, START, Chain

    paths = [
        (["A", "A", "B"], True),
        (["B", "A"], False),
        (["A"], False),
        (["B", "B", "A", "B"], True),
        (["C", "A", "B"], True),
        (["C"], False),
    ]
    chain = Chain(paths)

    def iterate(removed: str | None) -> float:
        x: dict[str, float] = dict.fromkeys(chain.states, 0.0)
        for _ in range(2000):
            new = {}
            for s in chain.states:
                if s == removed:
                    new[s] = 0.0
                    continue
                row = chain.counts[s]
                total = sum(row.values())
                new[s] = sum(n / total * (1.0 if t == CONVERSION else x.get(t, 0.0) if t != removed
                                          else 0.0) for t, n in row.items())  # fmt: skip
            x = new
        return x[START]

    assert chain.channels == ["A", "B", "C"]
    for removed in (None, "A", "B", "C"):
        assert chain.conversion_probability(removed) == pytest.approx(iterate(removed), abs=1e-9)
    base = iterate(None)
    assert 0.3 < base < 0.7  # not a degenerate chain
    effects = chain.removal_effects()
    assert effects == pytest.approx({c: 1 - iterate(c) / base for c in "ABC"}, abs=1e-9)


def test_credits_say_what_was_attributed_and_refuse_unknown_models_exactly() -> None:
    lost = journey("l2", [(0, "web")])
    paths = build_paths(Dataset([*TWO, lost], []), CFG)
    result = attribute(paths, "linear", "channel", CFG)
    assert (result.model, result.by, result.value, result.conversion) == (
        "linear", "channel", "conversions", paths.conversion)  # fmt: skip
    assert (result.total, result.conversions, result.quantum) == (1, 1, D("0.0001"))
    assert result.credits == {"ads": D("0.5000"), "email": D("0.5000")}
    revenue = attribute(build_paths(Dataset(TWO, []), CFG, value="revenue"), "linear",
                        "channel", CFG)  # fmt: skip
    assert revenue.value == "revenue" and revenue.quantum == D("0.01")
    assert revenue.total == sum(revenue.credits.values())
    assert revenue.total.as_tuple().exponent == -2
    with pytest.raises(ReportError) as model:
        attribute(paths, "nope", "channel", CFG)
    expected = f"unknown attribution model 'nope'; expected one of {', '.join(MODELS)}"
    assert str(model.value) == expected
    with pytest.raises(ReportError) as by:
        attribute(paths, "linear", "city", CFG)
    assert str(by.value) == "cannot attribute by 'city'; expected one of channel, campaign, content"


def test_markov_without_any_conversion_gives_no_channel_an_effect() -> None:
    from engine.analytics.markov import Chain

    chain = Chain([(["A", "B"], False), (["B"], False)])
    assert chain.conversion_probability() == 0.0
    assert chain.removal_effects() == {"A": 0.0, "B": 0.0}


def test_side_by_side_orders_keys_by_total_credit_and_totals_in_the_quantum() -> None:
    # web converts three leads alone, ads one: web first though "ads" sorts first by name
    js = [journey(f"w{i}", [(0, "web")], opportunity=1, won=2) for i in range(3)]
    js.append(journey("a1", [(0, "ads")], opportunity=1, won=2))
    paths = build_paths(Dataset(js, []), CFG)
    rows = side_by_side([attribute(paths, m, "channel", CFG) for m in ("linear", "first_touch")])
    assert [r["channel"] for r in rows] == ["web", "ads", "TOTAL"]
    nothing = build_paths(Dataset([journey("l", [(0, "web")])], []), CFG)
    (total,) = side_by_side([attribute(nothing, "linear", "channel", CFG)])
    assert total == {"channel": "TOTAL", "linear": D("0.0000")} and str(total["linear"]) == "0.0000"
    assert str(attribute(paths, "linear", "channel", CFG).total) == "4"  # a count, unquantized


def test_shapley_attribution_uses_the_configured_exact_limit_and_samples() -> None:
    """Three channels on the converting path: exact under the default limit; with the limit
    at 2 and one sample, the single sampled ordering gives other credits."""
    js = [
        journey("l1", [(0, "ads"), (1, "email"), (2, "web")], opportunity=3, won=3),
        journey("l2", [(0, "ads")], opportunity=3, won=3),
        journey("l3", [(0, "email"), (1, "web")]),
        journey("l4", [(0, "web")], opportunity=3, won=3),
    ]
    paths = build_paths(Dataset(js, []), CFG)
    exact = attribute(paths, "shapley", "channel", CFG).credits
    low = Attribution(shapley_exact_max_channels=2, shapley_samples=10)
    sampled = attribute(paths, "shapley", "channel", low).credits
    assert sum(exact.values()) == sum(sampled.values()) == 3
    assert sampled != exact  # 10 orderings of 3 channels do not reproduce the exact values
    again = attribute(paths, "shapley", "channel", low).credits
    assert again == sampled  # seeded by the channel set: every run the same
    more = Attribution(shapley_exact_max_channels=2, shapley_samples=13)
    assert attribute(paths, "shapley", "channel", more).credits != sampled  # samples are used


def test_exact_split_hands_leftover_units_out_by_largest_remainder_one_each() -> None:
    from engine.analytics.allocate import exact_split

    # 7 units over four equal shares: 1.75 each, floors 1, three units left: a, b, c (ties go
    # to the smaller key), one each
    assert exact_split(dict.fromkeys("abcd", 1.0), D(7), D(1)) == {
        "a": D(2), "b": D(2), "c": D(2), "d": D(1)}  # fmt: skip
    assert exact_split({"x": 2.0, "y": 1.0}, D("1.00"), D("0.01")) == {"x": D("0.67"),
                                                                       "y": D("0.33")}  # fmt: skip
    assert exact_split({}, D(5), D(1)) == {}


def test_revenue_credits_are_in_the_currency_minor_unit() -> None:
    """Yen have no minor unit: credits are whole yen."""
    import dataclasses

    js = [journey("j1", [(0, "ads"), (1, "web"), (2, "email")], opportunity=3, won=3,
                  amount="1000")]  # fmt: skip
    js[0].milestones[:] = [dataclasses.replace(m, currency="JPY") if m.amount else m
                           for m in js[0].milestones]  # fmt: skip
    paths = build_paths(Dataset(js, []), CFG, value="revenue")
    result = attribute(paths, "linear", "channel", CFG)
    assert result.quantum == D(1)
    # 1000 / 3 = 333.33 each; the one yen left goes to the first key of the tie
    assert result.credits == {"ads": D(334), "email": D(333), "web": D(333)}
    assert str(result.total) == "1000"


def test_side_by_side_counts_a_key_a_model_left_out_as_zero() -> None:
    """`markov` leaves out a key it gives nothing: that key weighs 0.5 in all, "y" 1.5."""
    from engine.analytics.attribution import Credits

    def result(model: str, credits: dict[str, str]) -> Credits:
        return Credits(model, "channel", "conversions", "customer", D(1), 1,
                       {k: D(v) for k, v in credits.items()})  # fmt: skip

    rows = side_by_side([result("linear", {"x": "0.5", "y": "0.5"}), result("markov", {"y": "1"})])
    assert rows == [
        {"channel": "y", "linear": D("0.5"), "markov": D("1")},
        {"channel": "x", "linear": D("0.5"), "markov": D("0.0000")},
        {"channel": "TOTAL", "linear": D("1.0"), "markov": D("1")},
    ]
