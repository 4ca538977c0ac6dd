"""Events -> read-model rows, in memory: the half of the projector that touches no table.

A `Folder` decodes stored events, folds them onto their aggregates (kept in an LRU cache; a
miss is read from the repository) and adds the rows each event makes to a `Batch`: one row per
history event (touches, milestones, stage changes, routings, costs, identity links) and, once
per batch, each touched lead's current rows (state, a score per model, SLA). An aggregate that
fails to decode, fold or make its rows is parked (engine/projections/parking.py) for the
projections whose rows it could not make; the rest of the batch goes on.

The live projector and the bulk load both fold through here; they differ only in how the rows
reach the tables (engine/projections/bulk.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from engine.aggregates.account import Account
from engine.aggregates.campaign import Campaign
from engine.aggregates.kin import KIN_EVENTS
from engine.aggregates.lead import Lead
from engine.aggregates.routing import Roster, RoutingQueue
from engine.logs import get_logger
from engine.projections import accounts, identity, parking, person_sla, rounds, rows
from engine.projections.layout import KEYED_TABLES, PROJECTIONS, RETRACTED
from engine.projections.parking import INFRASTRUCTURE, Park
from engine.services.application import LeadEngine, link_of
from engine.services.cache import CACHE_FACTS, Budgeted

log = get_logger("engine.projector")

#: Events of the shared routing aggregates and of `Kin` (write-side state the read model does
#: not need).
ROUTING_STATE_EVENTS = (
    RoutingQueue.Started,
    RoutingQueue.Assigned,
    RoutingQueue.Released,
    Roster.Started,
    Roster.AvailabilityChanged,
    *KIN_EVENTS,
)
#: Their stored topics: such an event is skipped before it is decoded (nothing reads it).
ROUTING_STATE_TOPICS = frozenset(get_topic(cls) for cls in ROUTING_STATE_EVENTS)

Row = tuple[Any, ...]


@dataclass
class Batch:
    """What one batch of notifications adds to the read model."""

    last_position: int = 0
    #: notifications past each projection's position
    events: dict[str, int] = field(default_factory=dict)
    leads: dict[UUID, Lead] = field(default_factory=dict)
    touches: list[Row] = field(default_factory=list)
    stages: list[Row] = field(default_factory=list)
    costs: list[Row] = field(default_factory=list)
    routings: list[Row] = field(default_factory=list)
    milestones: list[Row] = field(default_factory=list)
    links: list[Row] = field(default_factory=list)  # identity decisions
    #: (when, lead id, version) of stage-history rows of earlier batches late facts took back
    retracted: list[tuple[datetime, UUID, int]] = field(default_factory=list)
    #: (pseudonym, lead id) by table, for the leads forgotten in this batch
    rekeys: dict[str, list[tuple[str, UUID]]] = field(default_factory=dict)
    cost_owners: list[UUID] = field(default_factory=list)  # the campaign of each row of `costs`
    #: each aggregate's first notification in the batch
    first_seen: dict[UUID, int] = field(default_factory=dict)
    #: (projection, aggregate) skipped as parked
    skipped: set[tuple[str, UUID]] = field(default_factory=set)
    #: the accounts this batch updated (their account_state rows: engine/projections/accounts)
    accounts: dict[UUID, Account] = field(default_factory=dict)

    def event_rows(self) -> dict[str, list[Row]]:
        """The history rows this batch adds (one per event), by table."""
        return {
            "lead_touchpoints": self.touches,
            "lead_milestones": self.milestones,
            "lead_stage_history": self.stages,
            "lead_routing": self.routings,
            "campaign_costs": self.costs,
            identity.TABLE: self.links,
            identity.PEOPLE_TABLE: [],
        }

    def owner(self, table: str, index: int, row: Row) -> UUID:
        """The aggregate a row of `table` belongs to (its park if the database rejects it)."""
        return self.cost_owners[index] if table == "campaign_costs" else cast(UUID, row[0])


class Folder:
    """Decodes and folds events into batches of rows; parks the aggregates that fail."""

    def __init__(self, app: LeadEngine, cache_size: int, cache_facts: int = CACHE_FACTS) -> None:
        self.app = app
        #: an LRU dict bounded by count and by facts held, trimmed on every set
        self.cache = Budgeted(cache_size, cache_facts)
        #: aggregates set aside, per projection, and the parks not yet committed
        self.parked: dict[str, set[UUID]] = {name: set() for name in PROJECTIONS}
        self.some_parked = False
        self.parks: list[Park] = []
        #: account_signals rows of the leads `lead_rows` made rows for last
        self.signals: list[Row] = []
        #: the identity decisions up to the position folded (whose facts stop an SLA)
        self.links = person_sla.KnownLinks()

    def set_parked(self, found: dict[str, set[UUID]]) -> None:
        """The parked aggregates as the table has them now; uncommitted parks are dropped."""
        self.parked.update(found)
        self.some_parked = any(self.parked.values())
        self.parks = []

    def forget_parked(self) -> None:
        self.parked = {name: set() for name in PROJECTIONS}
        self.some_parked, self.parks = False, []

    def take_parks(self) -> list[Park]:
        taken, self.parks = self.parks, []
        return taken

    def wanted(self, positions: dict[str, int], position: int, batch: Batch) -> frozenset[str]:
        """The projections that have not seen `position` yet (counted in the batch)."""
        want = frozenset(n for n, at in positions.items() if position > at)
        for name in want:
            batch.events[name] = batch.events.get(name, 0) + 1
        return want

    def take(self, stored: StoredEvent, position: int, batch: Batch, want: frozenset[str]) -> None:
        """Decode and fold one stored event, for the projections that have not parked its
        aggregate; a failure parks the aggregate instead of stopping the batch. The routing
        aggregates' own events are not even decoded (`fold` would skip them)."""
        if stored.topic in ROUTING_STATE_TOPICS:
            return
        originator = cast(UUID, stored.originator_id)
        if self.some_parked:
            skipped = [n for n in want if originator in self.parked[n]]
            if skipped:
                batch.skipped.update((n, originator) for n in skipped)
                want = want.difference(skipped)
                if not want:
                    self.cache.pop(originator, None)  # if it comes back, read from the store
                    self._note_link(stored)
                    return
        batch.first_seen.setdefault(originator, position)
        try:
            event = self.app.sealed_mapper.to_domain_event(stored)
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            self.failed(exc, want, originator, position, batch, evict=True)
            return
        self.fold(event, position, batch, want)

    def _note_link(self, stored: StoredEvent) -> None:
        """An identity decision of a parked lead still makes people (other leads' SLAs)."""
        if stored.topic != person_sla.LINKED_TOPIC:
            return
        try:
            event: Any = self.app.sealed_mapper.to_domain_event(stored)
        except INFRASTRUCTURE:
            raise
        except Exception:  # the lead is parked for it already; its decisions wait for a retry
            return
        self.links.add(event.originator_id, event.originator_version, link_of(event))

    def failed(
        self,
        exc: Exception,
        projections: frozenset[str] | set[str],
        originator: UUID,
        position: int,
        batch: Batch | None,
        table: str | None = None,
        *,
        evict: bool = False,
    ) -> None:
        """Park `originator` in `projections`: its later events are skipped there. `evict`: the
        aggregate itself could not take the event (its cached state is no longer whole)."""
        agg = self.cache.pop(originator, None) if evict else self.cache.get(originator)
        key = agg.key if isinstance(agg, Lead) else None
        if key is None and batch is not None and originator in batch.leads:
            key = batch.leads[originator].key
        error, reason = parking.describe(exc, key, table)
        for name in projections:
            if originator in self.parked.setdefault(name, set()):
                continue
            self.parked[name].add(originator)
            self.some_parked = True
            self.parks.append(Park(name, originator, key, position, error, reason))
            log.warning(
                "aggregate parked: its later events are skipped until `projections retry`",
                projection=name,
                aggregate=str(originator),
                position=position,
                reason=reason,
            )
        if "leads" in projections and batch is not None:
            batch.leads.pop(originator, None)

    def aggregate(self, event: Any) -> Any:
        agg_id = event.originator_id
        cache = self.cache
        agg = cache.get(agg_id)
        if agg is not None and agg.version == event.originator_version - 1:
            agg = event.mutate(agg)
        elif event.originator_version == 1:
            agg = event.mutate(None)
        else:
            agg = self.app.repository.get(agg_id, version=event.originator_version)
        cache[agg_id] = agg  # to the young end, trimmed to the count and the facts budget
        return agg

    @property
    def cache_size(self) -> int:
        return self.cache.maxsize

    @cache_size.setter
    def cache_size(self, size: int) -> None:
        self.cache.maxsize = size

    def unbounded(self) -> None:
        """Keep every aggregate (a bulk load folds each once, in log order)."""
        self.cache.maxsize = self.cache.budget = 1 << 62

    def fold(
        self, event: Any, position: int, batch: Batch, want: frozenset[str] = frozenset(PROJECTIONS)
    ) -> None:
        if isinstance(event, ROUTING_STATE_EVENTS):
            return  # queues and the roster: their effects show on the leads; never rebuilt here
        try:
            agg = self.aggregate(event)  # every event folds, wanted or not: aggregates stay whole
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            self.failed(exc, want, event.originator_id, position, batch, evict=True)
            return
        if isinstance(event, Lead.Linked):  # whatever is wanted: an SLA reads the person
            self.links.add(event.originator_id, event.originator_version, link_of(event))
        if not want:
            return
        try:
            self._rows(agg, event, position, batch, want)
        except INFRASTRUCTURE:
            raise
        except Exception as exc:
            projection = projection_of(event)
            self.failed(exc, want & {projection}, event.originator_id, position, batch)

    def _rows(
        self, agg: Any, event: Any, position: int, batch: Batch, want: frozenset[str]
    ) -> None:
        """Add the rows `event` makes (for the projections in `want`) to the batch."""
        if isinstance(agg, Account):
            if "leads" in want and agg.updates:  # none: a provisional account not open yet
                batch.accounts[agg.id] = agg
            return
        if isinstance(agg, Campaign):
            if isinstance(event, Campaign.CostRecorded) and "costs" in want:
                batch.costs.append(rows.cost_row(agg, event))
                batch.cost_owners.append(agg.id)
            return
        lead = agg
        if "leads" in want:
            batch.leads[lead.id] = lead
        if isinstance(event, Lead.Erased):  # every row that showed the key gets the pseudonym
            for name in want:
                for table in PROJECTIONS[name]:
                    if table in KEYED_TABLES:
                        batch.rekeys.setdefault(table, []).append((lead.key, lead.id))
        if isinstance(event, Lead.FactRecorded) and event.event_type.startswith("touch."):
            if "touchpoints" in want:
                batch.touches.append(rows.touch_row(lead, event, position))
        elif isinstance(event, Lead.FactRecorded) and event.event_type in rows.MILESTONE_TYPES:
            if "touchpoints" in want:
                batch.milestones.append(rows.milestone_row(lead, event, position))
        elif isinstance(event, (Lead.StageChanged, Lead.MarketingQualified)):
            if "history" in want:
                batch.stages.append(rows.stage_row(lead, event))
        elif isinstance(event, Lead.StageRetracted) and "history" in want:
            retract(batch, lead.id, event.version_retracted, event.timestamp)
        elif isinstance(event, (Lead.Routed, Lead.RoutingFailed)) and "history" in want:
            batch.routings.append(rows.routing_row(lead, event))
        elif isinstance(event, Lead.Linked) and "history" in want:
            batch.links.append(identity.link_row(event, position))

    def lead_rows(
        self,
        leads: list[Lead],
        first_seen: dict[UUID, int],
        upto: int,
        *,
        others: bool = True,
    ) -> dict[str, list[Row]]:
        """The leads' current rows (state, a score per model, SLA) as of log position `upto`,
        by table. A lead's SLA is timed by its person's facts (engine/projections/person_sla.py);
        with `others`, the SLA rows of the other routed leads of their people (and of the people
        a decision of the batch parted) are made again too (a bulk load makes every lead's rows
        anyway). A lead whose rows cannot be made is parked in `leads` (at its first
        notification in `first_seen`)."""
        rules = self.app.rules
        parked = self.parked["leads"]
        lead_rows: list[Row] = []
        score_rows: list[Row] = []
        sla_rows: list[Row] = []
        round_rows: list[Row] = []  # lead_sla_rounds (engine/projections/rounds.py)
        self.signals = []
        person = (
            person_sla.person_facts(self.app, self.links, leads, self.cache, upto, others=others)
            if rules.sla is not None
            else person_sla.PersonFacts()
        )
        for lead in leads:
            # A batch may end between a lead's creation and its first fact; the next has it.
            if not lead.facts or lead.id in parked:
                continue
            facts = person.facts.get(lead.id)
            try:
                primary = lead.current_score(rules, explain=False)  # once for state and scores
                profile = rows.lead_profile(lead, rules)  # once for state and signals
                state = rows.lead_state_row(lead, rules, primary, profile)
                scores = rows.score_rows(lead, rules, primary)
                sla = rows.sla_row(lead, rules.sla, facts) if rules.sla is not None else None
                lead_rounds = (
                    rounds.round_rows(lead, rules.sla, facts) if rules.sla is not None else []
                )
                signals = accounts.signals_row(lead, primary.engagement, rules, profile)
            except INFRASTRUCTURE:
                raise
            except Exception as exc:
                self.failed(exc, {"leads"}, lead.id, first_seen.get(lead.id, 0), None)
                continue
            lead_rows.append(state)
            self.signals.append(signals)
            score_rows.extend(scores)
            if sla is not None:
                sla_rows.append(sla)
            round_rows.extend(lead_rounds)
        for lead in person.others:  # routed, untouched by the batch: its SLA rows only
            if lead.id in parked or rules.sla is None:
                continue
            facts = person.facts.get(lead.id)
            try:
                sla = rows.sla_row(lead, rules.sla, facts)
                lead_rounds = rounds.round_rows(lead, rules.sla, facts)
            except INFRASTRUCTURE:
                raise
            except Exception as exc:
                self.failed(exc, {"leads"}, lead.id, first_seen.get(lead.id, 0), None)
                continue
            if sla is not None:
                sla_rows.append(sla)
            round_rows.extend(lead_rounds)
        return {
            "lead_state": lead_rows,
            "lead_scores": score_rows,
            "lead_sla": sla_rows,
            "lead_sla_rounds": round_rows,
        }


def retract(batch: Batch, lead_id: UUID, version: int, at: datetime) -> None:
    """Stamp a stage-history row retracted at `at`: in the batch if it is there, else queue
    the update of the table's row (written by an earlier batch)."""
    for i, row in enumerate(batch.stages):
        if row[0] == lead_id and row[1] == version:
            batch.stages[i] = (*row[:RETRACTED], at, *row[RETRACTED + 1 :])
            return
    batch.retracted.append((at, lead_id, version))


def projection_of(event: Any) -> str:
    """The projection whose rows `event` makes (the one to park its aggregate in if that fails)."""
    if isinstance(event, Campaign.CostRecorded):
        return "costs"
    if isinstance(event, Lead.FactRecorded) and (
        event.event_type.startswith("touch.") or event.event_type in rows.MILESTONE_TYPES
    ):
        return "touchpoints"
    if isinstance(
        event,
        (
            Lead.StageChanged,
            Lead.StageRetracted,
            Lead.MarketingQualified,
            Lead.Routed,
            Lead.RoutingFailed,
            Lead.Linked,
        ),
    ):
        return "history"
    return "leads"
