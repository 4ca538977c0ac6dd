"""The person behind a routed lead's SLA rows: which leads' facts stop its timers.

`lead_sla` and `lead_sla_rounds` time a lead's own routings by its person's sales touches and
decisions (engine/stitching/person.py `sla_facts`), so the projector must know, as of the
position it projects to, the person of every lead whose rows it makes, and which routed leads a
batch may change: a fact on a member, or a link, merge or unmerge anywhere in the person.

`KnownLinks` holds every identity decision (`Lead.Linked`) at or before that position: folded
from the log as the projector reads it, and read off the log by topic (a few rows per linked
lead) once for the ones before, at the first batch or after the projector skipped ahead (a
rebuild's switch). The rows depend only on the decisions and facts at or before the position,
so a live batch and a rebuild make the same rows (tests/integration/test_person_sla.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.utils import get_topic
from psycopg import sql

from engine.aggregates.lead import Lead
from engine.domain.facts import Fact
from engine.postgres.store import by_topic
from engine.services.application import LeadEngine, link_of
from engine.stitching.identity_map import IdentityMap, Link
from engine.stitching.person import sla_facts

LINKED_TOPIC = get_topic(Lead.Linked)


@dataclass
class KnownLinks:
    """The identity decisions up to a position, indexed by the leads they name."""

    #: each decision by its event's (aggregate, version): folded twice, held once
    links: dict[tuple[UUID, int], Link] = field(default_factory=dict)
    touching: dict[UUID, list[Link]] = field(default_factory=dict)
    #: every decision at or before this position is held
    covered: int = 0

    def add(self, originator_id: UUID, version: int, link: Link) -> None:
        if (originator_id, version) in self.links:
            return
        self.links[(originator_id, version)] = link
        for end in (link.lead_id, link.other_id):
            self.touching.setdefault(end, []).append(link)

    def ensure(self, app: LeadEngine, upto: int, folded_from: int | None = None) -> None:
        """Hold every decision at or before `upto`. `folded_from`: the caller folded the log
        from there to `upto` (its decisions are held); the ones before are read off the log
        unless held already."""
        start = upto + 1 if folded_from is None else folded_from
        if self.covered < start - 1:
            for notification in by_topic(app.recorder, LINKED_TOPIC):
                if notification.id > upto:
                    break
                event: Any = app.sealed_mapper.to_domain_event(notification)
                self.add(event.originator_id, event.originator_version, link_of(event))
        self.covered = max(self.covered, upto)

    def component(self, seeds: Iterable[UUID]) -> set[UUID]:
        """Every lead any decision ever joined, or parted, with `seeds` (transitively): a
        superset of their people before and after any of the decisions."""
        found: set[UUID] = set()
        todo = [s for s in seeds if s in self.touching]
        while todo:
            lead_id = todo.pop()
            if lead_id in found:
                continue
            found.add(lead_id)
            for link in self.touching.get(lead_id, ()):
                todo.extend(e for e in (link.lead_id, link.other_id) if e not in found)
        return found

    def people(self, leads: Iterable[UUID]) -> IdentityMap:
        """The identity map of every decision among `leads` (a union of components)."""
        ids = set(leads)
        return IdentityMap(
            {id(x): x for i in ids for x in self.touching.get(i, ()) if x.lead_id in ids}.values()
        )


@dataclass
class PersonFacts:
    """The facts each linked lead's SLA reads, and the routed leads a batch did not touch whose
    SLA rows its facts or decisions may change (`others`)."""

    facts: dict[UUID, list[Fact]] = field(default_factory=dict)
    others: list[Lead] = field(default_factory=list)


def person_facts(
    app: LeadEngine,
    known: KnownLinks,
    leads: list[Lead],
    held: Mapping[UUID, Any],
    upto: int,
    *,
    others: bool,
) -> PersonFacts:
    """For each of `leads` some decision names: its person's facts as of position `upto`; and,
    if `others`, every other routed lead of their components (to make its SLA rows again).
    Members are taken from `held` (the projector's folded aggregates, at the position), else
    read from the store as of `upto`."""
    out = PersonFacts()
    seeds = [lead.id for lead in leads if lead.id in known.touching]
    if not seeds:
        return out
    ids = known.component(seeds)
    people = known.people(ids)
    batch = {lead.id: lead for lead in leads}
    loaded: dict[UUID, Lead] = {}
    missing = []
    for lead_id in ids:
        agg = batch.get(lead_id) or held.get(lead_id)
        if isinstance(agg, Lead):
            loaded[lead_id] = agg
        else:
            missing.append(lead_id)
    loaded.update(leads_at(app, missing, upto))
    for lead_id, lead in loaded.items():
        members = [loaded[m] for m in people.members(lead_id) if m in loaded]
        out.facts[lead_id] = sla_facts(lead, members)
        if others and lead_id not in batch and lead.routings:
            out.others.append(lead)
    out.others.sort(key=lambda lead: str(lead.id))
    return out


def leads_at(app: LeadEngine, ids: list[UUID], upto: int) -> dict[UUID, Lead]:
    """The leads `ids` folded from their events at or before log position `upto`, in one query
    (in memory: as they are now); a lead with no event by then is absent."""
    if not ids:
        return {}
    recorder = app.recorder
    if not isinstance(recorder, PostgresAggregateRecorder):
        found: dict[UUID, Lead] = {}
        for lead_id in ids:
            try:
                agg: Any = app.repository.get(lead_id)
            except AggregateNotFoundError:
                continue
            if isinstance(agg, Lead):
                found[lead_id] = agg
        return found
    datastore = recorder.datastore
    statement = sql.SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{} "
        "WHERE originator_id = ANY(%s) AND notification_id <= %s "
        "ORDER BY originator_id, originator_version"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    with datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(statement, (ids, upto))
        rows = curs.fetchall()
    folded: dict[UUID, Any] = {}
    for row in rows:
        agg_id = row["originator_id"]
        agg_id = agg_id if isinstance(agg_id, UUID) else UUID(str(agg_id))
        stored = StoredEvent(agg_id, row["originator_version"], row["topic"], bytes(row["state"]))
        event: Any = app.sealed_mapper.to_domain_event(stored)
        folded[agg_id] = event.mutate(folded.get(agg_id))
    return {i: agg for i, agg in folded.items() if isinstance(agg, Lead)}
