"""One person's derived state, computed from the union of its leads' facts (pure).

Nothing here is stored: a person is a view over the log, so merging shows the union at once
and unmerging gives back each lead's own state exactly (each lead's facts never moved). The
rules (docs/identity.md): score over the union of facts; stage = the stage of the member that
got furthest in the funnel; owner = a manual owner beats a routed one, the earliest wins; the
attribution path = every member's touches in event time (anonymous touches before the capture
count); the SLA of a routed member = its own routings, timed by the whole person's sales touches
and decisions (`person_sla`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from engine.aggregates.lead import Lead
from engine.domain.facts import Fact
from engine.domain.lifecycle import IDENTITY_FACTS, RANK
from engine.domain.rules import ScoringModel, Sla
from engine.domain.scoring import Score, score
from engine.domain.sla import SlaState, sla_state


@dataclass(frozen=True, slots=True)
class Touch:
    """A touch on the person's path: which lead it was recorded on, and the fact."""

    lead_id: UUID
    fact: Fact


@dataclass(frozen=True)
class Person:
    person_id: UUID
    lead_ids: tuple[UUID, ...]
    stage: str
    furthest: str
    owner: str | None
    owner_source: str | None
    score: Score
    path: tuple[Touch, ...]

    @property
    def first_touch(self) -> Touch | None:
        return self.path[0] if self.path else None


def _order(lead_id: UUID, fact: Fact) -> tuple[datetime, str, str, str]:
    return (fact.occurred_at, fact.source, fact.event_id, str(lead_id))


def union_facts(leads: Sequence[Lead]) -> list[Fact]:
    """Every member's facts in event time (ties: source, id, lead): arrival order plays no
    part, so any interleaving of the members' streams gives the same list."""
    tagged = sorted(
        ((lead.id, f) for lead in leads for f in lead.facts if f.type not in IDENTITY_FACTS),
        key=lambda p: _order(*p),
    )
    return [
        Fact(f.event_id, f.type, f.source, f.occurred_at, f.data, seq=i, extra=f.extra)
        for i, (_lead, f) in enumerate(tagged)
    ]


def _furthest(lead: Lead) -> int:
    return max((RANK[s] for s in (*lead.reached, lead.stage) if s in RANK), default=0)


def _owner_since(lead: Lead) -> datetime:
    """When the lead's current owner got it: the latest upstream assignment, or routing."""
    if lead.owner_source == "manual":
        assigned = [f.occurred_at for f in lead.facts if f.type == "owner.assigned"]
        return max(assigned)
    return lead.routings[-1][0] if lead.routings else datetime.max.replace(tzinfo=UTC)


def person_state(person_id: UUID, leads: Sequence[Lead], rules: ScoringModel) -> Person:
    """The person made of `leads` (one or more), under scoring `rules`."""
    if not leads:
        raise ValueError("a person has at least one lead")
    members = sorted(leads, key=lambda lead: str(lead.id))
    facts = union_facts(members)
    clock = max((f.occurred_at for f in facts), default=None)
    furthest = max(members, key=lambda lead: (_furthest(lead), lead.clock or lead.created_on))
    owned = [lead for lead in members if lead.owner is not None]
    owner = min(
        owned,
        key=lambda lead: (lead.owner_source != "manual", _owner_since(lead), str(lead.id)),
        default=None,
    )
    path = tuple(
        Touch(lead.id, f)
        for lead, f in sorted(
            ((lead, f) for lead in members for f in lead.facts if f.is_touch),
            key=lambda p: _order(p[0].id, p[1]),
        )
    )
    return Person(
        person_id=person_id,
        lead_ids=tuple(lead.id for lead in members),
        stage=furthest.stage,
        furthest=max(
            (s for lead in members for s in (*lead.reached, lead.stage) if s in RANK),
            key=RANK.__getitem__,
            default="anonymous",
        ),
        owner=owner.owner if owner else None,
        owner_source=owner.owner_source if owner else None,
        score=score(facts, rules, clock or members[0].created_on),
        path=path,
    )


def sla_facts(lead: Lead, members: Sequence[Lead]) -> list[Fact]:
    """The facts the SLA timers of `lead` read: its own and every other member's of its person
    (`members`; `lead` itself counted once whether listed or not). The timers take the earliest
    qualifying fact at or after a routing, so neither the members' order nor their streams'
    interleaving plays a part: the result is the SLA of one lead holding the union."""
    seen = {lead.id}
    facts = list(lead.facts)
    for member in members:
        if member.id not in seen:
            seen.add(member.id)
            facts.extend(member.facts)
    return facts


def person_sla(lead: Lead, members: Sequence[Lead], sla: Sla, as_of: datetime) -> SlaState | None:
    """The SLA of `lead`'s latest routing round at `as_of`: the lead's own routings (one person,
    one clock: the routed key's), stopped by a sales touch or decision on any key of its person
    (`members`, as the identity map had them at `as_of`); None if it was not routed then."""
    return sla_state(sla_facts(lead, members), lead.routings, sla, as_of)
