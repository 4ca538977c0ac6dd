"""Duplicate detection at ingest (docs/identity.md#duplicates): the rules in
`identity.duplicates` look at each accepted fact's e-mail / phone, index a keyed hash of the
normalised value, and when another lead key carries the same hash record the rule's decision.

The older key wins (earliest first seen, then id). A newcomer younger than a lead of the same
value is paired with the oldest of them; a newcomer older than all of them is paired with each
(and the open pairs those had as winner are superseded), so the open pairs in the end do not
depend on the order keys arrived in. Each pair is dated by the younger key's first seen (when,
in event time, the value had two keys), not by the fact that happened to show it.

`suggest` records an open suggestion; `merge` also records an engine merge (`Lead.Linked`,
relation merged, by `leadengine`, reason naming the rule and the rules version) on the
newcomer's stream, the only stream this consumer writes; when the newcomer is the older key it
wins (`subject_wins`), so the person id is the older key's whatever the arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from engine.aggregates.kin import Kin
from engine.aggregates.lead import Lead
from engine.domain.contract import Envelope
from engine.domain.duplicates import FIELD, match_hash, normalise, seniority
from engine.domain.rules import DuplicateRule, Rules
from engine.postgres.duplicates import Batch, Pair

#: who engine merges name as their decider
ENGINE = "leadengine"


def detect(
    index: Batch,
    secret: bytes,
    rules: Rules,
    accepted: Sequence[tuple[Lead, Envelope]],
    on_merge: Callable[[Lead, UUID, str, Envelope, bool], None] | None = None,
) -> None:
    """Index the values of a batch's accepted facts and record what the duplicate rules decide,
    as if the facts had come one by one in batch order (one round trip to read the index; the
    batch's index rows and pairs are written in its save's transaction). `on_merge(lead, other,
    event_id, env, wins)` is told of each engine merge after it is recorded on `lead`, and
    whether `lead` won (the
    application notes it on the other lead's `Kin`, as for an upstream merge, so one person
    still gets one owner)."""
    found: list[tuple[Lead, Envelope, DuplicateRule]] = []
    items: list[tuple[str, str, UUID, datetime]] = []
    for lead, env in accepted:
        for rule in rules.identity.duplicates:
            value = normalise(rule.match, env.data.get(FIELD[rule.match]))
            if value is not None:
                found.append((lead, env, rule))
                digest = match_hash(secret, rule.match, value)
                items.append((rule.match, digest, lead.id, env.occurred_at))
    if not items:
        return
    decided: list[tuple[int, Pair]] = []
    version = f"{rules.name}@{rules.version}"
    for (lead, env, rule), group in zip(found, index.note_many(items), strict=True):
        others = {i: t for i, t in group.items() if i != lead.id}
        if not others:
            continue
        oldest = min(others, key=lambda i: seniority(others[i], i))
        if seniority(others[oldest], oldest) < seniority(group[lead.id], lead.id):
            pairs = [(oldest, lead.id)]
        else:
            pairs = [(lead.id, i) for i in sorted(others, key=str)]
        at = index.seen.get((env.source, env.id), index.at)
        decided += (
            (at, Pair(rule.name, rule.match, rule.action, w, lo, version, max(group[w], group[lo])))
            for w, lo in pairs
        )
        if rule.action != "merge":
            continue
        for winner, loser in pairs:
            wins = winner == lead.id  # an older key after a younger: it wins, on its stream
            other: UUID = loser if wins else winner
            lead.link(
                relation="merged",
                other_id=other,
                event_id=f"{env.id}#duplicate:{rule.name}:{other}",
                source=env.source,
                by=ENGINE,
                reason=f"duplicate rule {rule.name} (rules {version}): same {rule.match}",
                at=env.occurred_at,
                subject_wins=wins,
            )
            if on_merge is not None:
                on_merge(lead, other, f"{env.id}#duplicate:{rule.name}:{other}", env, wins)
    for at, pair in decided:
        index.decide([pair], at)


def upstream(index: Batch, event_type: str, lead_id: UUID, other: UUID) -> None:
    """An upstream lead.merged takes the pair's open suggestion (state merged); a lead.unmerged
    takes the pair apart (state unmerged), whether the engine or upstream merged it."""
    if event_type == "lead.merged":
        index.merged(lead_id, other)
    elif event_type == "lead.unmerged":
        index.unmerged(lead_id, other)


def decide(
    batch: Batch,
    lead: Lead,
    pairs: Sequence[Pair],
    kin: Callable[[UUID], Kin],
    *,
    accept: bool,
    by: str,
    reason: str,
    at: datetime,
) -> None:
    """Someone's decision on the open suggestions `pairs` (one loser, `lead`, one winner; a
    rule each): accept records a merge on the loser's stream as an upstream `lead.merged`
    would (relation merged, `by`, `reason`; noted on both leads' `Kin`), so `lead.unmerged`
    undoes it; dismiss records `DuplicateDismissed`. The pairs' state (merged / dismissed)
    goes in the same batch. `leadengine duplicates accept|dismiss`."""
    winner = pairs[0].winner_id
    rules = ", ".join(p.rule for p in pairs)
    if not accept:
        lead.dismiss_duplicate(other_id=winner, rule=rules, by=by, reason=reason, at=at)
        batch.dismissed(winner, lead.id)
        return
    event_id = f"duplicates-accept:{winner}"
    lead.link(
        relation="merged",
        other_id=winner,
        event_id=event_id,
        source=ENGINE,
        by=by,
        reason=f"accepted duplicate suggestion ({rules}): {reason}",
        at=at,
    )
    kin(winner).join(
        relation="merged", lead_id=lead.id, occurred_at=at, source=ENGINE, event_id=event_id
    )
    kin(lead.id).decide(
        relation="merged", other_id=winner, occurred_at=at, source=ENGINE, event_id=event_id
    )
    batch.merged(winner, lead.id)
