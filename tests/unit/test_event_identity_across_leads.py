"""Event identity is (source, id) across leads, not per lead: a pair recorded on one lead and
sent again under another key is a duplicate (same content) or a conflict (other content, naming
the other lead by id and the fields), never a second stored fact (in-memory store)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.aggregates.lead import Lead, Recorded
from engine.domain.contract import Envelope, validate_event
from engine.domain.errors import EventConflict
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import raw


def deal(subject: str, amount: str = "1000.00", *, id: str = "deal-7") -> Envelope:
    data = {"amount": amount, "currency": "USD"}
    return validate_event({**raw("deal.won", subject, data, id=id), "source": "crm"})


def stored_pairs(app: LeadEngine) -> list[tuple[str, str]]:
    pairs = []
    for n in app.recorder.select_notifications(start=1, limit=100_000):
        event: Any = app.mapper.to_domain_event(n)
        if isinstance(event, Lead.FactRecorded):
            pairs.append((event.source, event.event_id))
    return pairs


def test_the_same_pair_with_other_content_on_another_lead_is_a_conflict(
    memory_app: LeadEngine,
) -> None:
    assert memory_app.ingest([deal("lead-7")]).accepted == 1
    result = memory_app.ingest([deal("lead-8", "99.00")])
    assert (result.accepted, result.duplicates, result.conflicts) == (0, 0, 1)
    ((index, exc),) = result.rejected
    assert index == 0 and isinstance(exc, EventConflict)
    assert exc.field == "data.amount" and exc.event_id == "deal-7"
    lead_7 = memory_app.lead_id("lead-7")
    assert f"lead {lead_7}" in exc.describe()
    assert "lead-7" not in exc.describe() and "lead-8" not in exc.describe()  # keys are PII
    assert stored_pairs(memory_app) == [("crm", "deal-7")]


def test_the_same_pair_with_the_same_content_on_another_lead_is_a_duplicate(
    memory_app: LeadEngine,
) -> None:
    memory_app.ingest([deal("lead-7")])
    result = memory_app.ingest([deal("lead-8")])
    assert (result.accepted, result.duplicates, result.conflicts) == (0, 1, 0)
    assert result.outcomes == [("deal-7", Recorded.DUPLICATE)]
    assert stored_pairs(memory_app) == [("crm", "deal-7")]
    assert len(list(memory_app.recorder.select_events(memory_app.lead_id("lead-8")))) == 0


def test_within_one_batch_the_first_lead_keeps_the_pair(memory_app: LeadEngine) -> None:
    result = memory_app.ingest([deal("lead-7"), deal("lead-8", "5.00"), deal("lead-9")])
    assert [o for _, o in result.outcomes] == [
        Recorded.ACCEPTED,
        Recorded.CONFLICT,
        Recorded.DUPLICATE,
    ]
    assert stored_pairs(memory_app) == [("crm", "deal-7")]


def test_a_redelivery_to_the_same_lead_is_unchanged(memory_app: LeadEngine) -> None:
    memory_app.ingest([deal("lead-7")])
    again = memory_app.ingest([deal("lead-7"), deal("lead-7", "1.00")])
    assert [o for _, o in again.outcomes] == [Recorded.DUPLICATE, Recorded.CONFLICT]
    assert "not on this event's subject" not in again.rejected[0][1].describe()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),  # lead
            st.sampled_from(["crm", "web"]),  # source
            st.integers(0, 4),  # id
            st.sampled_from(["10.00", "20.00"]),  # content
        ),
        min_size=1,
        max_size=25,
    ),
    st.integers(1, 6),
)
def test_every_pair_is_stored_at_most_once(
    stream: list[tuple[int, str, int, str]], batch: int
) -> None:
    app = LeadEngine(env=POPO_ENV)
    try:
        events = [
            validate_event(
                {
                    **raw("deal.won", f"lead-{lead}", {"amount": a, "currency": "USD"}, id=f"d{i}"),
                    "source": s,
                }
            )
            for lead, s, i, a in stream
        ]
        first: dict[tuple[str, str], str] = {}
        outcomes = []
        for start in range(0, len(events), batch):
            outcomes += [o for _, o in app.ingest(events[start : start + batch]).outcomes]
        for env, outcome in zip(events, outcomes, strict=True):
            pair = (env.source, env.id)
            if pair not in first:
                first[pair] = env.data["amount"]
                assert outcome is Recorded.ACCEPTED
            else:  # the same pair again, on any lead: its content decides
                same = env.data["amount"] == first[pair]
                assert outcome is (Recorded.DUPLICATE if same else Recorded.CONFLICT)
        pairs = stored_pairs(app)
        assert sorted(pairs) == sorted(first)  # each pair stored once, every new one stored
    finally:
        app.close()
