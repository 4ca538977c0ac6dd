"""Account attribution: an account's journey is its people's journeys as one, so a won deal on
the account credits the touches of all its people; under every model the credits still add up
exactly to the accounts' conversions and revenue, whatever the journeys and accounts."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analytics.accounts import by_account
from engine.analytics.attribution import MODELS, attribute
from engine.analytics.journeys import Dataset
from engine.analytics.paths import build_paths
from tests.unit.test_attribution import CFG, credits, journey

D = Decimal


def test_a_won_deal_credits_the_touches_of_everyone_at_the_account() -> None:
    buyer = journey("l1", [(5, "email")], opportunity=6, won=8, amount="900")
    colleague = journey("l2", [(1, "ads")], captured=1)  # never converted herself
    outsider = journey("l3", [(2, "webinar")], opportunity=3, won=4, amount="100")
    ds = by_account(Dataset([buyer, colleague, outsider], []), {"l1": "a1", "l2": "a1"})
    assert (ds.leads, ds.left_out) == (2, 1)
    (account,) = ds.dataset.journeys
    assert account.key == "a1" and [t.channel for t in account.touches] == ["ads", "email"]
    got = credits(ds.dataset.journeys, "linear", value="revenue", currency="USD")
    assert got == {"ads": D("450.00"), "email": D("450.00")}  # the colleague's ad counts
    lead_level = credits([buyer, colleague], "linear", value="revenue", currency="USD")
    assert lead_level == {"email": D("900.00")}


def test_an_account_converts_when_its_first_lead_does() -> None:
    early = journey("l1", [(1, "ads")], opportunity=2, won=3, amount="10")
    late = journey("l2", [(1.5, "email"), (6, "seo")], opportunity=7, won=9, amount="20")
    ds = by_account(Dataset([early, late], []), {"l1": "a1", "l2": "a1"})
    paths = build_paths(ds.dataset, CFG, value="revenue", currency="USD")
    (path,) = paths.converting
    assert path.value == D("30")  # both won deals: the account's revenue
    assert [t.channel for t in path.touches] == ["ads", "email"]  # up to the first conversion


_JOURNEY = st.builds(
    lambda n, touches, won, amount: journey(
        f"l{n}",
        [(day, ch) for day, ch in touches],
        opportunity=(won - 1) if won is not None else None,
        won=won,
        amount=amount,
    ),
    st.integers(0, 10_000),
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from(["ads", "email", "seo", "webinar"])),
        max_size=5,
    ),
    st.one_of(st.none(), st.integers(3, 25)),
    st.sampled_from(["0.01", "1", "333.33", "1000", "99999.99"]),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_JOURNEY, min_size=1, max_size=8, unique_by=lambda j: j.key),
    st.lists(st.sampled_from([None, "a1", "a2", "a3"]), min_size=8, max_size=8),
)
def test_every_model_sums_exactly_over_accounts(
    journeys: list[object], accounts: list[str | None]
) -> None:
    keys = {j.key: a for j, a in zip(journeys, accounts, strict=False) if a}  # type: ignore[attr-defined]
    ds = by_account(Dataset(journeys, []), keys).dataset  # type: ignore[arg-type]
    assert len(ds.journeys) == len(set(keys.values()))
    for value in ("conversions", "revenue"):
        paths = build_paths(ds, CFG, value=value, currency="USD")
        for model in MODELS:
            result = attribute(paths, model, "channel", CFG)
            assert sum(result.credits.values(), D(0)) == result.total, (model, value)
            if value == "revenue":
                assert all(c == c.quantize(D("0.01")) for c in result.credits.values())
