"""A `lead.unmerged` dated before every join of its two leads would undo nothing (the identity
map takes back only the joins before an unmerge), so it is refused with a reason naming the
merge it came too early for, and kept as a dead letter; one dated after the merge undoes it.
An unmerge that arrives before any merge of the pair is stored as before (a later-dated
merge then stands)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.contract import validate_event
from engine.domain.errors import UnmergeBeforeMerge
from engine.domain.rules import load_rules
from engine.services.application import LeadEngine
from tests.conftest import POPO_ENV
from tests.factory import raw

MASTER = b"u" * 32


def engine() -> LeadEngine:
    return LeadEngine(rules=load_rules(), env=POPO_ENV, master_key=MASTER)


def event(type_: str, key: str, data: dict[str, Any], hours: int, id: str) -> Any:
    return validate_event(raw(type_, key, data, days=hours / 24, id=id))


def pair(app: LeadEngine) -> None:
    app.ingest([
        event("lead.captured", "ada", {"email": "ada@x.org"}, 0, "c1"),
        event("lead.captured", "ada-2", {"email": "ada2@x.org"}, 0, "c2"),
    ])  # fmt: skip


MERGE = {"winner": "ada", "by": "crm", "reason": "dup"}


@settings(max_examples=60, deadline=None)
@given(
    merge=st.integers(1, 50),
    unmerge=st.integers(1, 50),
    joins=st.sampled_from(["loser's stream", "winner's stream", "both"]),
)
def test_an_unmerge_before_every_join_is_refused_one_after_undoes_it(
    merge: int, unmerge: int, joins: str
) -> None:
    app = engine()
    pair(app)
    if joins != "winner's stream":  # the merge, on the loser's (the unmerge's subject's) stream
        app.ingest([event("lead.merged", "ada-2", MERGE, merge, "m1")])
    if joins != "loser's stream":  # a join the other way, on the winner's stream (as an engine
        # merge with subject_wins is): read there, as committed
        app.ingest([event("identity.linked", "ada", {"to": "ada-2"}, merge, "l1")])
    result = app.ingest([event("lead.unmerged", "ada-2", MERGE, unmerge, "u1")])
    ada, dup = app.lead_id("ada"), app.lead_id("ada-2")
    people = app.identity_map().people()
    if unmerge < merge:
        ((_, refused),) = result.rejected
        assert isinstance(refused, UnmergeBeforeMerge)
        assert refused.event_id == "u1" and refused.field == "time"
        assert f"precedes the merge of lead {dup} and lead {ada}" in str(refused)
        assert "ada-2" not in str(refused) and "'ada'" not in str(refused)  # ids, no key
        assert result.accepted == 0 and result.conflicts == 1
        assert any(ada in members and dup in members for members in people.values())
        assert "u1" not in {f.event_id for f in app.get_lead("ada-2").facts}
    else:
        assert result.accepted == 1 and not result.rejected
        assert not any(ada in members and dup in members for members in people.values())


def test_an_unmerge_before_any_merge_is_stored_and_a_later_merge_stands() -> None:
    app = engine()
    pair(app)
    result = app.ingest([event("lead.unmerged", "ada-2", MERGE, 5, "u1")])
    assert result.accepted == 1
    app.ingest([event("lead.merged", "ada-2", MERGE, 9, "m1")])
    ada = app.lead_id("ada")
    assert app.identity_map().people() == {ada: sorted([ada, app.lead_id("ada-2")], key=str)}


@settings(max_examples=60, deadline=None)
@given(
    merge=st.integers(1, 3),
    unmerge=st.integers(1, 3),
    unmerge_id=st.sampled_from(["a1", "u1"]),  # sorts before / after the joins' ids m1, l1
    joins=st.sampled_from(["loser's stream", "winner's stream", "both"]),
)
def test_an_unmerge_at_the_same_time_as_the_merge_but_ordered_before_it_is_refused(
    merge: int, unmerge: int, unmerge_id: str, joins: str
) -> None:
    """Ties in event time are ordered by source, event id, lead id (docs/identity.md rule 1):
    an unmerge dated at the merge's very moment but ordered before it would undo nothing too."""
    app = engine()
    pair(app)
    join_ids = []
    if joins != "winner's stream":
        app.ingest([event("lead.merged", "ada-2", MERGE, merge, "m1")])
        join_ids.append("m1")
    if joins != "loser's stream":
        app.ingest([event("identity.linked", "ada", {"to": "ada-2"}, merge, "l1")])
        join_ids.append("l1")
    result = app.ingest([event("lead.unmerged", "ada-2", MERGE, unmerge, unmerge_id)])
    ada, dup = app.lead_id("ada"), app.lead_id("ada-2")
    together = any(ada in m and dup in m for m in app.identity_map().people().values())
    if all((unmerge, unmerge_id) < (merge, j) for j in join_ids):
        ((_, refused),) = result.rejected
        assert isinstance(refused, UnmergeBeforeMerge) and refused.field == "time"
        assert result.accepted == 0 and together
    else:
        assert result.accepted == 1 and not result.rejected and not together
