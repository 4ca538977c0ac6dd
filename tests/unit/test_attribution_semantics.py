"""What docs/reports.md says of paths, exactly as implemented: the two-touch U-shape under other
weights, `lookback_days`, non-converting paths; credits independent of the order of the input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics.attribution import MODELS, attribute
from engine.analytics.journeys import Dataset, Journey, Milestone, Move, Touchpoint
from engine.analytics.paths import build_paths
from engine.domain.rules import Attribution

T0 = datetime(2026, 3, 1, tzinfo=UTC)
D = Decimal


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def journey(
    key: str,
    touches: list[tuple[float, str]],
    *,
    captured: float = 0.0,
    won: float | None = None,
    amount: str = "100",
) -> Journey:
    j = Journey(key)
    for seq, (day, channel) in enumerate(touches):
        j.touches.append(Touchpoint(at(day), seq, "touch.page_viewed", channel))
    j.moves.append(Move(at(captured), "anonymous", "lead", "lead.captured"))
    j.milestones.append(Milestone(at(captured), "lead.captured"))
    if won is not None:
        j.moves.append(Move(at(won), "lead", "customer", "deal.won"))
        j.milestones.append(Milestone(at(won), "deal.won", amount=D(amount), currency="EUR"))
    j.sort()
    return j


def credits(
    journeys: list[Journey], model: str, cfg: Attribution, **kw: object
) -> dict[str, Decimal]:
    paths = build_paths(Dataset(journeys, []), cfg, **kw)  # type: ignore[arg-type]
    return attribute(paths, model, "channel", cfg).credits


def test_two_touch_u_shape_splits_first_to_last_in_proportion() -> None:
    two = [journey("l", [(0, "a"), (1, "b")], won=2)]
    skewed = Attribution(position_first=0.3, position_last=0.5)
    assert credits(two, "position_based", skewed) == {"a": D("0.375"), "b": D("0.625")}
    zero = Attribution(position_first=0, position_last=0)
    assert credits(two, "position_based", zero) == {"a": D("0.5"), "b": D("0.5")}
    assert credits(two, "position_based", Attribution()) == {"a": D("0.5"), "b": D("0.5")}
    three = [journey("l", [(0, "a"), (1, "m"), (1.5, "b")], won=2)]
    assert credits(three, "position_based", zero) == {"a": D(0), "b": D(0), "m": D(1)}
    ends = Attribution(position_first=0.5, position_last=0.5)
    assert credits(three, "position_based", ends) == {"a": D("0.5"), "b": D("0.5"), "m": D(0)}
    one = [journey("l", [(0, "a")], won=2)]
    assert credits(one, "position_based", skewed) == {"a": D(1)}


def test_lookback_keeps_both_ends_and_drops_the_milestone_it_cuts_off() -> None:
    cfg = Attribution(lookback_days=3)
    # day 7 is exactly 3 days before the conversion on day 10: kept; day 6.9 is not
    touches = [(0, "created"), (6.9, "early"), (7, "edge"), (8, "mid"), (10, "close")]
    j = journey("l", touches, won=10)
    # thirds: the one unit left goes to the first key in code-point order
    assert credits([j], "linear", cfg) == {
        "close": D("0.3334"), "edge": D("0.3333"), "mid": D("0.3333"),
    }  # fmt: skip
    # W-shaped: the lead-creation touch (day 0) is cut off, so that milestone is left out: the
    # first kept touch 30%, the opportunity touch (customer skips through it) 30%, spread 10%,
    # scaled to 100%: 3/7, 3/7, 1/7; the two units left go to the equal remainders
    assert credits([j], "w_shaped", cfg) == {
        "close": D("0.4286"), "edge": D("0.4286"), "mid": D("0.1428"),
    }  # fmt: skip


def test_non_converting_paths_are_the_windows_touches_of_leads_not_converted_by_its_end() -> None:
    cfg = Attribution(lookback_days=1)
    late = journey("late", [(1, "a"), (5, "b"), (12, "c")], won=15)  # converts after --to
    never = journey("never", [(2, "d"), (30, "e")])
    before = journey("before", [(0, "f")], won=1)  # converted before --from
    paths = build_paths(Dataset([late, never, before], []), cfg, start=at(2), end=at(14))
    assert paths.converting == []
    got = {p.lead: [t.channel for t in p.touches] for p in paths.not_converting}
    assert got == {"late": ["b", "c"], "never": ["d"]}  # in [from, to), no lookback
    assert all(p.value == 0 and p.converted_at is None for p in paths.not_converting)


channels = st.sampled_from(["ads", "email", "web", "Ads", "(none)"])
journeys_st = st.lists(
    st.tuples(
        st.lists(st.tuples(st.integers(0, 20), channels), min_size=0, max_size=5),
        st.one_of(st.none(), st.integers(0, 25)),
        st.sampled_from(["1", "33.33", "100", "0.01"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(spec=journeys_st, seed=st.integers(0, 2**16))
def test_credits_do_not_depend_on_the_order_journeys_arrive_in(
    spec: list[tuple[list[tuple[int, str]], int | None, str]], seed: int
) -> None:
    def build(order: list[int]) -> list[Journey]:
        return [
            journey(f"l{i}", [(float(d), c) for d, c in spec[i][0]], won=spec[i][1],
                    amount=spec[i][2])
            for i in order
        ]  # fmt: skip

    forward = list(range(len(spec)))
    shuffled = forward[:]
    random.Random(seed).shuffle(shuffled)
    cfg = Attribution()
    for value in ("conversions", "revenue"):
        a = build_paths(Dataset(build(forward), []), cfg, value=value, currency="EUR")
        b = build_paths(Dataset(build(shuffled[::-1]), []), cfg, value=value, currency="EUR")
        for model in MODELS:
            first, second = attribute(a, model, "channel", cfg), attribute(b, model, "channel", cfg)
            assert first.credits == second.credits, (model, value)
            assert first.rows() == second.rows()
