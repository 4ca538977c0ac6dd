"""One person, one owner: the write side's routing looks at the whole person (docs/identity.md).

A lead that needs routing is routed only if no other lead of its person is being worked
(routed with its routing open, or given a manual owner upstream); else the engine records why
it did not route it (`RoutingFailed`, queue none, naming the other lead by id and its owner),
and asks again on the lead's next fact, so an unmerge gives the lead its own routing back.

The person is read where every consumer can read it: each member's own identity decisions
(`Lead.links`) and what other streams noted on its `Kin` (engine/aggregates/kin.py), walked
until no new member turns up, then folded by the identity map (same rule as everywhere). Other
members are read from the store as committed, never from the cache (another consumer writes
them). A routing then notes `Claimed` on the `Kin` of every lead it looked at: two consumers
routing two members of one person at once write one `Kin` from one version, one of them loses
and redoes its batch on a fresh read, and sees the other's routing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate

from engine.aggregates.kin import Kin
from engine.aggregates.lead import Lead
from engine.stitching.identity_map import IdentityMap, Link

#: a lead's `Kin`, loaded fresh into the batch (LeadEngine._load_shared)
LoadKin = Callable[[UUID], Kin]
#: a lead as committed (None: no stream yet)
PeekLead = Callable[[UUID], Lead | None]


class PersonView:
    """The person of one lead as this batch can see it, and the `Kin` it read to see it."""

    def __init__(self, lead: Lead, touched: dict[UUID, Aggregate], load_kin: LoadKin,
                 peek: PeekLead) -> None:  # fmt: skip
        self.lead = lead
        self.leads: dict[UUID, Lead | None] = {lead.id: lead}
        self.kins: dict[UUID, Kin] = {}
        links: set[Link] = set()
        frontier, queued = [lead.id], {lead.id}
        while frontier:
            lead_id = frontier.pop()
            if lead_id in self.leads:
                member = self.leads[lead_id]
            else:
                found = touched.get(lead_id)
                member = found if isinstance(found, Lead) else peek(lead_id)
                self.leads[lead_id] = member
            kin = self.kins[lead_id] = load_kin(lead_id)
            found_links = [bare(link) for link in member.links] if member is not None else []
            found_links += [
                Link(relation, subject, lead_id, at, source, event_id, subject_wins=wins)
                for relation, subject, at, source, event_id, wins in kin.joined
            ]
            found_links += [
                Link(relation, lead_id, other, at, source, event_id, subject_wins=wins)
                for relation, other, at, source, event_id, wins in getattr(kin, "decided", [])
            ]
            for link in found_links:
                links.add(link)
                for other in (link.lead_id, link.other_id):
                    if other not in queued:
                        queued.add(other)
                        frontier.append(other)
        self.members = IdentityMap(links).members(lead.id)

    def worked_by(self) -> tuple[Lead, str] | None:
        """Another member someone works (manual owner, or an open routing), and how; the
        first by lead id, so every consumer names the same one."""
        for lead_id in self.members:
            other = self.leads.get(lead_id)
            if lead_id == self.lead.id or other is None or other.owner is None:
                continue
            if other.owner_source == "manual":
                return other, "manual"
            if other.routing_open:
                return other, "routed"
        return None

    def claim(self, owner: str, at: datetime) -> None:
        for kin in self.kins.values():
            kin.claim(lead_id=self.lead.id, owner=owner, at=at)


def bare(event: Lead.Linked) -> Link:
    """The decision as the identity map folds it (who and why play no part)."""
    return Link(event.relation, event.originator_id, event.other_id, event.occurred_at,
                event.source, event.event_id,
                subject_wins=getattr(event, "subject_wins", False))  # fmt: skip


def reason(other: Lead, how: str) -> str:
    given = "assigned (manual owner) to" if how == "manual" else "routed to"
    return (
        f"one person, one owner: lead {other.id} of the same person is {given} "
        f"{other.owner}; this lead is routed only once that ends (or the leads are unmerged)"
    )
