"""Each check of `verify` reached on its own: one tamper a case, which only that check can see,
with the exact aggregate, version and problem of the single break asserted."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.postgres.chain import digest
from engine.postgres.verify import anchor, verify
from engine.runtime import Runtime

#: each problem `_check_aggregate` reports, by the check that reports it
PROBLEMS = {
    "gap": "versions 3..3 missing (event and link deleted)",
    "event": "event missing (deleted); its link remains",
    "no link": "has no chain link",
    "digest": "stored bytes changed (digest differs)",
    "link": "link does not follow from the previous one",
}


def _sql(runtime: Runtime, query: str, *params: Any) -> list[Any]:
    with runtime.db.connect() as conn:
        conn.execute(f'SET search_path TO "{runtime.db.schema}"')
        cur = conn.execute(query, params)  # type: ignore[call-overload]
        return cur.fetchall() if cur.description else []  # type: ignore[no-any-return]


@pytest.fixture
def lead(runtime: Runtime) -> tuple[Runtime, UUID]:
    """A few leads ingested; the one with the most events (at least 4) is returned."""
    runtime.app.ingest([validate_event(e) for e in generate(6, seed=11)])
    rows = _sql(runtime, "SELECT originator_id, count(*) FROM leadengine_events "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1")  # fmt: skip
    agg, count = rows[0]
    assert count >= 4 and verify(runtime.db).ok
    return runtime, agg


def _version(runtime: Runtime, agg: UUID, version: int) -> tuple[str, bytes]:
    query = "SELECT topic, state FROM leadengine_events WHERE originator_id = %s "
    topic, state = _sql(runtime, query + "AND originator_version = %s", agg, version)[0]
    return topic, bytes(state)


def _delete_both(runtime: Runtime, agg: UUID) -> None:
    for table in ("event_chain", "leadengine_events"):
        _sql(runtime, f"DELETE FROM {table} WHERE originator_id = %s AND originator_version = 3",
             agg)  # fmt: skip


def _delete_event(runtime: Runtime, agg: UUID) -> None:
    _sql(runtime, "DELETE FROM leadengine_events WHERE originator_id = %s "
         "AND originator_version = 3", agg)  # fmt: skip


def _delete_link(runtime: Runtime, agg: UUID) -> None:
    _sql(runtime, "DELETE FROM event_chain WHERE originator_id = %s AND originator_version = 3",
         agg)  # fmt: skip


def _edit_bytes(runtime: Runtime, agg: UUID) -> None:
    _sql(runtime, "UPDATE leadengine_events SET state = state || ' '::bytea "
         "WHERE originator_id = %s AND originator_version = 3", agg)  # fmt: skip


def _edit_digest_column(runtime: Runtime, agg: UUID) -> None:
    """The event's bytes untouched, its stored digest replaced (its link left as it was)."""
    _sql(runtime, "UPDATE event_chain SET digest = sha256(digest) "
         "WHERE originator_id = %s AND originator_version = 3", agg)  # fmt: skip


def _edit_link_only(runtime: Runtime, agg: UUID) -> None:
    """Event and digest untouched: only the link entry of version 3 is replaced."""
    _sql(runtime, "UPDATE event_chain SET entry = sha256(entry) "
         "WHERE originator_id = %s AND originator_version = 3", agg)  # fmt: skip


def _reorder_with_digests(runtime: Runtime, agg: UUID) -> None:
    """Swap versions 2 and 3 and recompute their digests for their new places (the digest is
    an unkeyed hash anyone can recompute): only the links, kept as they were, can tell."""
    (t2, s2), (t3, s3) = _version(runtime, agg, 2), _version(runtime, agg, 3)
    for version, (topic, state) in ((2, (t3, s3)), (3, (t2, s2))):
        _sql(runtime, "UPDATE leadengine_events SET topic = %s, state = %s "
             "WHERE originator_id = %s AND originator_version = %s",
             topic, state, agg, version)  # fmt: skip
        _sql(runtime, "UPDATE event_chain SET digest = %s "
             "WHERE originator_id = %s AND originator_version = %s",
             digest(agg, version, topic, state), agg, version)  # fmt: skip


def _link_missing_below_chained_from(runtime: Runtime, agg: UUID) -> None:
    """Every event is below `chained_from` (as if recorded before hash chains), yet an event
    without a link after linked ones is a break: links only ever start, they never stop."""
    _sql(runtime, "UPDATE chain_start SET chained_from = "
         "(SELECT max(notification_id) + 1000 FROM leadengine_events)")  # fmt: skip
    _delete_link(runtime, agg)


CASES: dict[str, tuple[Callable[[Runtime, UUID], None], int, str]] = {
    "event and link deleted": (_delete_both, 3, PROBLEMS["gap"]),
    "event only deleted": (_delete_event, 3, PROBLEMS["event"]),
    "link only deleted": (_delete_link, 3, PROBLEMS["no link"]),
    "link missing after links, below chained_from": (
        _link_missing_below_chained_from, 3, PROBLEMS["no link"]),
    "stored bytes edited": (_edit_bytes, 3, PROBLEMS["digest"]),
    "digest column edited": (_edit_digest_column, 3, PROBLEMS["digest"]),
    "link only edited": (_edit_link_only, 3, PROBLEMS["link"]),
    "reordered, digests recomputed": (_reorder_with_digests, 2, PROBLEMS["link"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_each_check_of_verify_on_its_own(lead: tuple[Runtime, UUID], case: str) -> None:
    runtime, agg = lead
    tamper, version, problem = CASES[case]
    tamper(runtime, agg)
    report = verify(runtime.db)
    assert [(b.aggregate, b.version) for b in report.breaks] == [(agg, version)]
    (only,) = report.breaks
    assert problem in only.problem
    others = [p for p in PROBLEMS.values() if p != problem]
    assert not any(p in only.problem for p in others), only.problem
    # the same break when verifying that aggregate alone, and nothing for any other
    assert verify(runtime.db, agg).breaks == report.breaks
    other = _sql(runtime, "SELECT originator_id FROM leadengine_events WHERE originator_id <> %s "
                 "LIMIT 1", agg)[0][0]  # fmt: skip
    assert verify(runtime.db, other).ok


def test_unlinked_events_before_chains_verify_as_unchained(lead: tuple[Runtime, UUID]) -> None:
    """The tolerance the check above must not stretch: a stream below `chained_from` with no
    link at all is counted as unchained, not broken."""
    runtime, agg = lead
    _sql(runtime, "UPDATE chain_start SET chained_from = "
         "(SELECT max(notification_id) + 1000 FROM leadengine_events)")  # fmt: skip
    _sql(runtime, "DELETE FROM event_chain WHERE originator_id = %s", agg)
    report = verify(runtime.db)
    assert report.ok and report.unchained_aggregates == 1


def test_anchor_sees_an_edited_chain_start_on_its_own(lead: tuple[Runtime, UUID]) -> None:
    """Every chain still verifies (all events have links); only the anchor's record of
    `chained_from` differs."""
    runtime, _ = lead
    doc = anchor(runtime.db)
    assert doc["chained_from"] == 1
    _sql(runtime, "UPDATE chain_start SET chained_from = 2")
    report = verify(runtime.db)
    assert report.anchors_checked == 1 and len(report.breaks) >= 1
    text = f"anchor (table) at notification {doc['upto_notification_id']} does not match: "
    expected = text + "the log was chained from notification 1 then, 2 now (chain_start edited)"
    # no head changed, so the break cannot name an aggregate: one break on aggregate 0
    assert [(b.aggregate.int, b.version, b.problem) for b in report.breaks] == [
        (0, doc["upto_notification_id"], expected)
    ]


def test_anchor_sees_a_rehashed_link_on_its_own(lead: tuple[Runtime, UUID]) -> None:
    """The chained count and the log's count unchanged, no truncation: only the hash of the
    links differs, and the changed head is named."""
    runtime, agg = lead
    doc = anchor(runtime.db)
    head = _sql(runtime, "SELECT max(originator_version) FROM event_chain WHERE originator_id = %s",
                agg)[0][0]  # fmt: skip
    # rewrite the head's link consistently with its digest: the chain is fooled, not the anchor
    previous = _sql(runtime, "SELECT entry FROM event_chain WHERE originator_id = %s "
                    "AND originator_version = %s", agg, head - 1)[0][0]  # fmt: skip
    topic, state = _version(runtime, agg, head)
    state += b" "
    d = digest(agg, head, topic, state)
    _sql(runtime, "UPDATE leadengine_events SET state = %s WHERE originator_id = %s "
         "AND originator_version = %s", state, agg, head)  # fmt: skip
    _sql(runtime, "UPDATE event_chain SET digest = %s, entry = %s WHERE originator_id = %s "
         "AND originator_version = %s", d, hashlib.sha256(bytes(previous) + d).digest(), agg,
         head)  # fmt: skip
    assert verify(runtime.db, agg).ok
    report = verify(runtime.db)
    chained = doc["events"]
    expected = (
        f"anchor (table) at notification {doc['upto_notification_id']} does not match: "
        f"{chained} chained events then, {chained} now, or their links differ (history "
        f"rewritten); its link at version {head} differs now"
    )
    assert [(b.aggregate, b.version, b.problem) for b in report.breaks] == [(agg, head, expected)]
