"""`Shown` (engine/domain/shown.py), kept fact by fact, reads as `lead show` read the full
fact list: the latest captured contact, the profile, the touch count and the last five
touches, in time order, whatever order the facts arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.facts import Fact, chronological, profile_of
from engine.domain.shown import Shown

T0 = datetime(2026, 1, 5, tzinfo=UTC)
KINDS = ["lead.captured", "lead.profile_updated", "touch.page_viewed", "touch.email_opened",
         "form.submitted", "stage.changed"]  # fmt: skip


@given(
    st.lists(
        st.tuples(st.sampled_from(KINDS), st.integers(0, 20), st.sampled_from(["a", "b", None])),
        max_size=40,
    )
)
def test_kept_as_read_off_every_fact(items: list[tuple[str, int, str | None]]) -> None:
    facts = [
        Fact(f"e{n}", kind, "src", T0 + timedelta(hours=h), {"company": c, "url": c}, n)
        for n, (kind, h, c) in enumerate(items)
    ]
    shown = Shown.of(facts)
    ordered = chronological(facts)
    captured = [f for f in ordered if f.type == "lead.captured"]
    touches = [f for f in ordered if f.is_touch]
    assert shown.captured() == (captured[-1] if captured else None)
    assert shown.profile() == profile_of(facts)[0]
    assert shown.touches == len(touches)
    assert shown.last_touches == touches[-5:]
