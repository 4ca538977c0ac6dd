"""The LeadEngine application: one use case per method, load -> command -> save.

`ingest` records a batch of validated CloudEvents on their aggregates and saves every new event
of the batch in one transaction, optionally with a tracking record (the upstream position), so
the facts, the decisions they caused and the position commit together or not at all.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    LRUCache,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    ProcessRecorder,
    Tracking,
    Transcoding,
)
from eventsourcing.utils import get_topic
from pydantic import ValidationError

from engine.aggregates.account import PROVISIONAL, Account, account_id, provisional_key
from engine.aggregates.campaign import Campaign, campaign_id
from engine.aggregates.kin import Kin, kin_id
from engine.aggregates.lead import Lead, Recorded
from engine.aggregates.routing import ROSTER_KEY, Roster, RoutingQueue, queue_id, roster_id
from engine.domain.accounts.matching import (
    LeadSignals,
    Match,
    MemberDecision,
    domain_parents,
    match_for_routing,
    match_lead,
    normalise_name,
)
from engine.domain.accounts.matching import index as match_index
from engine.domain.accounts.profile import AccountProfile, fold
from engine.domain.accounts.scoring import AccountScore, MqaDecision
from engine.domain.accounts.whatif import signals as lead_signals
from engine.domain.contract import IDENTITY_TARGET, Envelope, LeadMerged, present_pii
from engine.domain.decisions import (
    ACCOUNT_TYPES,
    account_cloudevent,
    encode,
    mql_reasons,
    to_cloudevent,
)
from engine.domain.decisions import TYPES as DECISION_TYPES
from engine.domain.duplicates import match_secret
from engine.domain.errors import (
    EventConflict,
    LeadEngineError,
    LeadNotFound,
    UnmergeBeforeMerge,
)
from engine.domain.facts import profile_of
from engine.domain.identity import lookup as lookup_pair
from engine.domain.leadids import KEYED, LeadIds, id_secret, pseudonym
from engine.domain.limits import printable
from engine.domain.routing import choose, match_queue
from engine.domain.rules import Rules, load_rules
from engine.domain.scoring import best_of_profile
from engine.postgres import account_directory, poolcheck, snapshots
from engine.postgres.account_directory import (
    AccountDirectory,
    BatchReads,
    PostgresAccountDirectory,
    under,
)
from engine.postgres.contention import SharedLocks, lock_key
from engine.postgres.duplicates import DuplicateIndex, Pair, PostgresDuplicateIndex
from engine.postgres.identities import EventIdentities, PostgresEventIdentities
from engine.postgres.keyfile import MasterKeyError
from engine.postgres.keystore import KeyStore, PostgresKeyStore
from engine.postgres.outbox import Erasure, OutboxRecorder, Record
from engine.postgres.sealing import PiiMapper
from engine.postgres.store import by_topic, datastore_of, stored_scheme, streams_after
from engine.services import duplicates, person_routing
from engine.services.batch_accounts import BatchAccounts
from engine.services.cache import budget_cache, key_cache_size
from engine.stitching.identity_map import KIND_OF_TYPE, IdentityMap, Link
from engine.stitching.person import Person, person_state

A = TypeVar("A", bound=Aggregate)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0  # personal data for forgotten leads, under privacy.after_erasure: drop
    conflicts: int = 0  # a stored event's (source, id) with other content: refused
    #: fields the contract did not know, kept with accepted events (rules `contract`)
    unknown_fields: int = 0
    outcomes: list[tuple[str, Recorded]] = field(default_factory=list)
    #: the refused events, by their index in the batch, with the reason to keep them under
    rejected: list[tuple[int, EventConflict]] = field(default_factory=list)

    def add(self, other: IngestResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.ignored += other.ignored
        self.conflicts += other.conflicts
        self.unknown_fields += other.unknown_fields

    def count(self, event_id: str, outcome: Recorded) -> None:
        self.outcomes.append((event_id, outcome))
        if outcome is Recorded.ACCEPTED:
            self.accepted += 1
        elif outcome is Recorded.IGNORED:
            self.ignored += 1
        elif outcome is Recorded.CONFLICT:
            self.conflicts += 1
        else:
            self.duplicates += 1


#: a forgotten lead's pseudonym (engine.domain.leadids.pseudonym): erased- and 12 hex digits
_PSEUDONYM = re.compile(r"erased-[0-9a-f]{12}")


@dataclass(frozen=True)
class LeadRef:
    """A lead a command was given: its id, and its key (its pseudonym once forgotten)."""

    id: UUID
    key: str


@dataclass(frozen=True)
class Forgotten:
    """What `forget` did. `personal_values` are for purging copies elsewhere; never log them."""

    key: str = field(repr=False)  # personal data: never logged
    lead_id: UUID
    pseudonym: str  # what every table, view and export shows instead of the key from now on
    already: bool  # an earlier forget had recorded Erased
    key_shredded: bool  # a live key was destroyed now
    personal_values: frozenset[str] = field(repr=False)
    #: the person's other leads (aliases, merged leads), forgotten with it (engine/stitching)
    members: tuple[Forgotten, ...] = ()


#: eventsourcing names its tables after the application.
EVENTS_TABLE = "leadengine_events"
TRACKING_TABLE = "leadengine_tracking"


class LeadEngine(Application[UUID]):
    """Event-sourced leads and campaigns; decisions taken under `rules`."""

    name = "leadengine"
    env = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
        # One writer per lead (Kafka partitions by lead key), so the cache is trusted and
        # refreshed on save; a failed save evicts what it touched.
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def __init__(
        self,
        rules: Rules | None = None,
        env: dict[str, str] | None = None,
        master_key: bytes | None = None,
    ) -> None:
        super().__init__(env=env)
        budget_cache(self.repository, self.env.get("AGGREGATE_CACHE_FACTS"))  # flat memory
        #: per-lead caches (keys, lead ids) sized like the aggregate cache, never below one
        #: projector batch's leads: bounded, so memory does not grow with the leads seen
        per_lead = key_cache_size(self.env.get("AGGREGATE_CACHE_MAXSIZE"))
        self.rules = rules or load_rules()
        #: shared aggregates this batch read but did not change (the roster), read once
        self._peeked: dict[UUID, Aggregate | None] = {}
        #: the batch's stored or new aggregates read ahead in one query (`_create_unknown`)
        self._ready: dict[UUID, Aggregate] = {}
        #: shared aggregates the batch may read (its leads' `Kin`, the routing queues, the
        #: roster) read ahead in the same query (`_create_unknown`): id -> (class, key, the
        #: cached version then or 0, the events stored after it)
        self._shared_ahead: dict[UUID, tuple[type[Aggregate], str, int, list[Any]]] = {}
        datastore = datastore_of(self.recorder)
        keys: KeyStore
        #: who reads a contended queue first waits for it (None: the in-memory store, one writer)
        self.locks = None if datastore is None else SharedLocks(datastore)
        scheme = KEYED
        if datastore is not None:
            poolcheck.install(datastore.pool)  # no round trip per checkout (POSTGRES_PRE_PING)
            if master_key is None:
                raise MasterKeyError(
                    "a PostgreSQL store needs the master key that wraps the per-lead keys"
                )
            keys = PostgresKeyStore(datastore, master_key, per_lead)
            keys.create_tables()
            scheme = stored_scheme(datastore)
        else:  # the in-memory store lives as long as the process: so does its master key
            master_key = master_key or os.urandom(32)
            keys = KeyStore(master_key, per_lead)
        self.keys = keys
        #: a secret (hands it to a rebuild's worker processes only); never logged
        self.master_key = master_key
        #: the lead id of an upstream key: a keyed hash (or uuid5 on schemas made before 7)
        self.lead_id = LeadIds(id_secret(master_key), scheme, per_lead)
        #: duplicate rules' hash index and decisions (engine/services/duplicates.py)
        self.duplicates = (
            DuplicateIndex() if datastore is None else PostgresDuplicateIndex(datastore)
        )
        self._match_secret = match_secret(master_key)
        #: accounts' profiles for owner routing by domain and name (docs/accounts.md)
        self.account_directory = (
            AccountDirectory() if datastore is None else PostgresAccountDirectory(datastore)
        )
        #: the directory as one ingest reads it (None outside one): once per batch, not once
        #: per routed lead (engine/postgres/account_directory.py `BatchReads`)
        self._directory_reads: BatchReads | None = None
        #: the accounts the batch touched, as directory rows (`_match_now`)
        self._batch_accounts = BatchAccounts()
        #: an ingest's duplicate index rows and pairs, written in its save's transaction
        self._dup_batch = self.duplicates.batch()
        #: each fact's (source, id) -> the lead that recorded it (engine/postgres/identities.py)
        self.identities = (
            EventIdentities() if datastore is None else PostgresEventIdentities(datastore)
        )
        #: the batch's pairs as stored before it, and those it recorded (saved with it)
        self._owners: dict[tuple[str, str], UUID] = {}
        self._new_pairs: dict[tuple[str, str], UUID] = {}
        mapper = cast(PiiMapper, self.mapper)
        mapper.keys = keys
        #: decodes events without opening personal data: what projections and what-ifs read
        self.sealed_mapper = mapper.sealing(reveal=False)
        #: a PostgreSQL store writes each decision's outbound record with it
        #: (engine/postgres/outbox.py)
        self.outbox = isinstance(self.recorder, OutboxRecorder)
        #: each MQL's reasons, taken when it was decided (the lead's facts then), until saved
        self._mql_reasons: dict[tuple[UUID, int], list[dict[str, Any]]] = {}

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=PiiMapper)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def construct_recorder(self) -> ProcessRecorder:
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        return cast(ProcessRecorder, self.recorder)

    # -- queries ----------------------------------------------------------------------------

    def get_lead(self, key: str | UUID, version: int | None = None) -> Lead:
        """The lead named by its key, or by its id (`resolve`)."""
        lead_id = key if isinstance(key, UUID) else self.lead_id(key)
        try:
            return cast(Lead, self.repository.get(lead_id, version=version))
        except AggregateNotFoundError:
            raise LeadNotFound(str(key)) from None

    def resolve(self, named: str) -> LeadRef:
        """The lead a per-lead command names (docs/audit.md, "Finding a forgotten lead"): by
        its lead id, forgotten or not, or by a forgotten lead's pseudonym, before any key (an
        upstream key shaped like one does not hide the lead it names: that key's lead is shown
        by its own lead id); else by its key upstream, a live lead's only (a forgotten lead is
        not found by the key it had: refused as a key that never was, so the answer tells
        nobody the person was a lead)."""
        what = "key"
        as_id: UUID | None = None
        try:
            as_id = UUID(named)
            what = "key or lead id"
        except ValueError:
            if _PSEUDONYM.fullmatch(named.lower()):  # any case, as a lead id is taken
                what = "key, lead id or pseudonym"
                as_id = self._forgotten_as(named.lower())
        if as_id is not None:
            first: Any = next(self.events.get(as_id, limit=1), None)
            if first is not None:
                if self.keys.shredded(as_id):  # even mid-forget, before `Erased` was recorded
                    return LeadRef(as_id, pseudonym(as_id))
                return LeadRef(as_id, str(first.key))
        lead_id = self.lead_id(named)
        if self.recorder.select_events(lead_id, limit=1) and not self.keys.shredded(lead_id):
            return LeadRef(lead_id, named)
        raise LeadNotFound(named, what)

    def _forgotten_as(self, named: str) -> UUID | None:
        """The forgotten lead whose pseudonym is `named` (`erased-` and 12 hex digits of its id),
        None if no forgotten lead has it; refused when several have."""
        found = self.keys.shredded_with_prefix(named.removeprefix("erased-"))
        if len(found) > 1:
            raise LeadEngineError(
                f"{named} is the pseudonym of {len(found)} forgotten leads: give the lead id "
                f"({', '.join(sorted(str(i) for i in found))})"
            )
        return found[0] if found else None

    def lead_events(self, key: str | UUID) -> list[Any]:
        """The lead's stored events, named by its key or by its id (`resolve`)."""
        lead_id = key if isinstance(key, UUID) else self.lead_id(key)
        events = list(self.events.get(lead_id))
        if not events:
            raise LeadNotFound(str(key))
        return events

    def identity_links(self, as_of: datetime | None = None) -> list[Link]:
        """Every identity decision the engine had recorded by `as_of` (None: all), read off
        the log by topic (a few rows per linked lead, never the whole log)."""
        links: list[Link] = []
        for notification in by_topic(self.recorder, get_topic(Lead.Linked)):
            event: Any = self.sealed_mapper.to_domain_event(notification)
            if as_of is None or event.timestamp <= as_of:
                links.append(link_of(event))
        return links

    def identity_map(self, as_of: datetime | None = None) -> IdentityMap:
        return IdentityMap(self.identity_links(as_of))

    def person(self, key: str | UUID, as_of: datetime | None = None) -> Person:
        """The person the lead `key` (or lead id) belongs to: every linked or merged lead's
        facts as one."""
        lead_id = key if isinstance(key, UUID) else self.lead_id(key)
        people = self.identity_map(as_of)
        members = [
            m for i in people.members(lead_id) if (m := self._lead_by_id(i, as_of)) is not None
        ]
        if not members:
            raise LeadNotFound(str(key))
        return person_state(people.person_of(lead_id), members, self.rules)

    def person_members(
        self, lead_id: UUID, as_of: datetime | None = None, occurred_by: datetime | None = None
    ) -> list[Lead]:
        """The leads of `lead_id`'s person (itself included), as the decisions recorded by
        `as_of` and happened by `occurred_by` make it (None: no cut), each as recorded by
        `as_of`: whose facts stop its SLA timers (engine/stitching/person.py `person_sla`)."""
        links = self.identity_links(as_of)
        if occurred_by is not None:
            links = [link for link in links if link.occurred_at <= occurred_by]
        return [
            m
            for i in IdentityMap(links).members(lead_id)
            if (m := self._lead_by_id(i, as_of)) is not None
        ]

    def _lead_by_id(self, lead_id: UUID, as_of: datetime | None = None) -> Lead | None:
        """The lead as recorded by `as_of` (None: now); None while it had no fact (a member
        may be named by a link before any fact of its own arrived)."""
        if as_of is None:
            try:
                return cast(Lead, self.repository.get(lead_id))
            except AggregateNotFoundError:
                return None
        stream: list[Any] = list(self.events.get(lead_id))
        events = [e for e in stream if e.timestamp <= as_of]
        if not any(isinstance(e, Lead.FactRecorded) for e in events):
            return None
        lead: Any = None
        for event in events:
            lead = event.mutate(lead)
        return cast(Lead, lead)

    def max_position(self, name: str) -> int | None:
        return self.process_recorder.max_tracking_id(name)

    # -- commands ---------------------------------------------------------------------------

    def ingest(
        self,
        events: Sequence[Envelope],
        tracking: Tracking | None = None,
        *,
        keep_rejected: Callable[[IngestResult], None] | None = None,
    ) -> IngestResult:
        """Record `events` in order on their leads and campaigns; one transaction for all.

        An event whose (source, id) is stored with other content is refused (`CONFLICT`);
        `keep_rejected` is called with the result before the transaction, so the caller can keep
        the refused records (dead letters) before their position commits."""
        result = IngestResult()
        touched: dict[UUID, Aggregate] = {}
        self._peeked.clear()
        self._mql_reasons.clear()
        self._dup_pending: list[tuple[Lead, Envelope]] = []
        self._dup_batch = self.duplicates.batch()
        self._new_pairs = {}
        self._directory_reads = BatchReads(self.account_directory)
        try:
            self._ready = self._create_unknown(events)
            self._owners = self.identities.owners(
                (env.source, env.id)
                for env in events
                if not (env.is_campaign_event or env.is_roster_event or env.is_account_event)
            )
            for index, env in enumerate(events):
                self._dup_batch.at = index
                try:
                    outcome = self._apply(env, touched)
                except EventConflict as exc:
                    outcome = Recorded.CONFLICT
                    result.rejected.append((index, exc))
                result.count(env.id, outcome)
                if outcome is Recorded.ACCEPTED:
                    result.unknown_fields += env.unknown_count

            def kin_of_merge(
                lead: Lead, other: UUID, event_id: str, env: Envelope, wins: bool
            ) -> None:
                kin = self._load_shared(Kin, kin_id(other), str(other), touched)
                kin.join(
                    relation="merged",
                    lead_id=lead.id,
                    occurred_at=env.occurred_at,
                    source=env.source,
                    event_id=event_id,
                    subject_wins=wins,
                )
                own = self._load_shared(Kin, kin_id(lead.id), str(lead.id), touched)
                own.decide(
                    relation="merged",
                    other_id=other,
                    occurred_at=env.occurred_at,
                    source=env.source,
                    event_id=event_id,
                    subject_wins=wins,
                )

            duplicates.detect(
                self._dup_batch, self._match_secret, self.rules, self._dup_pending, kin_of_merge
            )
            if keep_rejected is not None and result.rejected:
                keep_rejected(result)
            self._save(list(touched.values()), tracking)
            self.duplicates.commit(self._dup_batch)  # the in-memory store's; PostgreSQL saved it
            self.identities.put(self._pair_rows())  # the in-memory store's; PostgreSQL saved it
        except BaseException as exc:
            if isinstance(exc, IntegrityError) and self.locks is not None:
                self.locks.contended(i for i, a in touched.items() if _shared(a))
            self._evict(touched)
            raise
        finally:
            self._shared_ahead = {}
            self._dup_batch = self.duplicates.batch()
            self._owners, self._new_pairs = {}, {}
            self._directory_reads = None
            self._batch_accounts.reset()
            if self.locks is not None:
                self.locks.release()
        return result

    def _apply(self, env: Envelope, touched: dict[UUID, Aggregate]) -> Recorded:
        if env.is_campaign_event:
            campaign = self._load(Campaign, campaign_id(env.subject), env.subject, touched)
            d = env.data
            return campaign.record_cost(
                event_id=env.id,
                source=env.source,
                occurred_at=env.occurred_at,
                campaign=d["campaign"],
                channel=d["channel"],
                amount=Decimal(d["amount"]),
                currency=d["currency"],
                period_start=_date(d["period_start"]),
                period_end=_date(d["period_end"]),
            )
        if env.is_roster_event:
            roster = self._load_shared(Roster, roster_id(), ROSTER_KEY, touched)
            return roster.record(
                event_id=env.id,
                source=env.source,
                rep=env.subject,
                data=dict(env.data),
                at=env.occurred_at,
            )
        if env.is_account_event:
            account = self._load(Account, account_id(env.subject), env.subject, touched)
            outcome = account.record(
                event_id=env.id, source=env.source, occurred_at=env.occurred_at, data=env.data
            )
            if outcome is Recorded.ACCEPTED:
                self._adopt_provisional(account, env, touched)
            return outcome
        lead_id = self.lead_id(env.subject)
        data = dict(env.data)
        if env.account is not None:  # the CloudEvents attribute, kept with the fact
            data[ACCOUNT_ATTRIBUTE] = env.account
        pair = (env.source, env.id)
        owner = self._new_pairs.get(pair) or self._owners.get(pair)
        if owner is not None and owner != lead_id:
            self._check_reused(owner, env, data, touched)
            return Recorded.DUPLICATE
        lead = self._load(Lead, lead_id, env.subject, touched)
        if env.type == "lead.unmerged":
            self._check_unmerge(lead, env, touched)
        was_open, queue_key = lead.routing_open, lead.queue
        outcome = lead.record(
            event_id=env.id,
            event_type=env.type,
            source=env.source,
            occurred_at=env.occurred_at,
            data=data,
            rules=self.rules,
            extra=dict(env.kept) or None,
        )
        if outcome is Recorded.ACCEPTED:
            self._new_pairs.setdefault(pair, lead_id)
        if outcome is Recorded.ACCEPTED and env.type in IDENTITY_TARGET:
            self._link(lead, env, touched)
        if outcome is Recorded.ACCEPTED and self.rules.identity.duplicates:
            self._dup_pending.append((lead, env))  # indexed with the batch (one round trip)
            self._dup_batch.seen[(env.source, env.id)] = self._dup_batch.at
        if outcome is Recorded.ACCEPTED and self.outbox:
            self._note_mql(lead)
        if (
            outcome is Recorded.ACCEPTED
            and self.rules.accounts.provisional is not None
            and ("email" in data or "company" in data or ACCOUNT_ATTRIBUTE in data)
        ):
            self._note_provisional(lead, env, touched)
        if outcome is Recorded.ACCEPTED:
            if was_open and not lead.routing_open and queue_key not in (None, ACCOUNT_OWNER):
                reason = (
                    f"manual owner.assigned to {lead.owner}"
                    if env.type == "owner.assigned"
                    else f"lead moved to {lead.stage}"
                )
                queue = self._load_shared(RoutingQueue, queue_id(queue_key), queue_key, touched)
                queue.release(
                    lead_key=str(lead.id), legacy_key=lead.key, reason=reason, at=env.occurred_at
                )
            if lead.needs_routing(self.rules):
                self._route_person(lead, env, touched)
        return outcome

    def _check_reused(
        self, owner: UUID, env: Envelope, data: dict[str, Any], touched: dict[UUID, Aggregate]
    ) -> None:
        """`env`'s (source, id) is recorded on the lead `owner`, not on its subject's: return if
        it is that fact again (a duplicate: identity is source and id, whatever the key), else
        raise `EventConflict` naming the lead by id (its key is personal) and the fields that
        differ. The stored fact is read from the lead as committed, opened (one read, and only
        when a pair comes back on another lead), or from this batch's copy."""
        other: Any = touched.get(owner)
        if not isinstance(other, Lead) or lookup_pair(other.seen, *pair_of(env)) is None:
            other = None
            for stored in self.recorder.select_events(owner):
                event: Any = self.mapper.to_domain_event(stored)
                other = event.mutate(other)
        known = None if other is None else lookup_pair(other.seen, *pair_of(env))
        where = f"recorded on lead {owner}, not on this event's subject"
        if known is None:  # the index names a lead that does not hold it: refuse, never guess
            raise EventConflict(
                f"conflicts with the event of source {env.source!r} and id {env.id!r} {where}",
                event_id=env.id,
                event_type=env.type,
                field="subject",
                expected="a new id for a new fact",
            )
        try:
            other.check_redelivery(
                other.facts[known], env.type, env.occurred_at, data, dict(env.kept) or None
            )
        except EventConflict as exc:
            exc.reason = f"{exc.reason}; {where}"
            exc.args = (exc.describe(),)
            raise

    def _pair_rows(self) -> list[tuple[str, str, UUID]]:
        return [(s, e, lead_id) for (s, e), lead_id in self._new_pairs.items()]

    def _check_unmerge(self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]) -> None:
        """Refuse (`UnmergeBeforeMerge`, kept as a dead letter) a `lead.unmerged` dated before
        every join of its two leads: the identity map takes back only the joins before an
        unmerge (decisions are ordered by event time), so it would undo nothing while the pair
        would read as unmerged. Its joins are on either lead's stream (an engine merge with
        `subject_wins` is on the winner's): the winner's is read as committed, or this batch's."""
        other_id = self.lead_id(str(env.data["winner"]))
        other = touched.get(other_id)
        winner = other if isinstance(other, Lead) else self._peek_lead(other_id)
        joins = [  # with each join's place in the identity map's order: event time, then
            # source, event id and subject's lead id (a tie at the merge's moment counts)
            *(
                ((j.occurred_at, j.source, j.event_id, str(lead.id)), j)
                for j in lead.links
                if j.other_id == other_id and j.relation != "unmerged"
            ),
            *(
                ((j.occurred_at, j.source, j.event_id, str(other_id)), j)
                for j in (winner.links if winner is not None else [])
                if j.other_id == lead.id and j.relation != "unmerged"
            ),
        ]
        unmerge = (env.occurred_at, env.source, env.id, str(lead.id))
        if joins and all(order > unmerge for order, _ in joins):
            first = min(joins, key=lambda oj: oj[0])[1]
            raise UnmergeBeforeMerge(
                f"lead.unmerged at {env.occurred_at.isoformat()} precedes the merge of lead "
                f"{lead.id} and lead {other_id} it would undo (event {first.event_id!r} of "
                f"source {first.source!r}, at {first.occurred_at.isoformat()}): an unmerge "
                "takes back only the joins before it, so this one would undo nothing",
                event_id=env.id,
                event_type=env.type,
                field="time",
                expected=f"a time after {first.occurred_at.isoformat()} (send the unmerge again, "
                "dated after the merge)",
            )

    def _link(self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]) -> None:
        """Record the identity decision beside the fact, naming the other lead by its id only:
        the decision lives on the subject's own stream (one writer per key, as every fact), and
        is noted on the other lead's `Kin`, where that lead's consumer reads it."""
        d = env.data
        other_id = self.lead_id(str(d[IDENTITY_TARGET[env.type]]))
        kin = self._load_shared(Kin, kin_id(other_id), str(other_id), touched)
        kin.join(
            relation=KIND_OF_TYPE[env.type],
            lead_id=lead.id,
            occurred_at=env.occurred_at,
            source=env.source,
            event_id=env.id,
        )
        own = self._load_shared(Kin, kin_id(lead.id), str(lead.id), touched)
        own.decide(
            relation=KIND_OF_TYPE[env.type],
            other_id=other_id,
            occurred_at=env.occurred_at,
            source=env.source,
            event_id=env.id,
        )
        duplicates.upstream(self._dup_batch, env.type, lead.id, other_id)
        lead.link(
            relation=KIND_OF_TYPE[env.type],
            other_id=other_id,
            event_id=env.id,
            source=env.source,
            by=d.get("by"),
            reason=d.get("reason"),
            at=env.occurred_at,
        )

    def _route_person(self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]) -> None:
        """Route the lead unless another lead of its person is worked (one person, one owner:
        engine/services/person_routing.py); a routing claims the person's `Kin`."""

        def kin(lead_id: UUID) -> Kin:
            return self._load_shared(Kin, kin_id(lead_id), str(lead_id), touched)

        view = person_routing.PersonView(lead, touched, kin, self._peek_lead)
        worked = view.worked_by()
        if worked is not None:
            why = person_routing.reason(*worked)
            lead.routing_failed(queue=None, reason=why, trigger=env.id, at=env.occurred_at)
            return
        self._route(lead, env, touched)
        if lead.routing_open and lead.owner is not None:
            view.claim(lead.owner, env.occurred_at)

    def person_now(self, lead: Lead) -> list[Lead]:
        """The leads of `lead`'s person as committed now, found as a routing finds them (the
        members' own decisions and their `Kin`, never a scan of the log): whose facts stop the
        lead's SLA timers (`leadengine timers`, engine/services/timers.py)."""
        touched: dict[UUID, Aggregate] = {}
        view = person_routing.PersonView(
            lead, touched, lambda lead_id: self._kin(touched, lead_id), self._peek_lead
        )
        return [m for i in view.members if (m := view.leads.get(i)) is not None]

    def _kin(self, touched: dict[UUID, Aggregate], lead_id: UUID) -> Kin:
        return self._load_shared(Kin, kin_id(lead_id), str(lead_id), touched)

    def _peek_lead(self, lead_id: UUID) -> Lead | None:
        """Another consumer's lead as committed (never the cache), personal data left sealed."""
        lead: Any = None
        for stored in self.recorder.select_events(lead_id):
            lead = self.sealed_mapper.to_domain_event(stored).mutate(lead)
        return cast(Lead | None, lead)

    def _route(self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]) -> None:
        """Give an unowned lead in the routing stage to a rep, as the rules say, or say why not."""
        routing = self.rules.routing
        assert routing is not None
        at = env.occurred_at  # a decision is dated at its trigger's event time
        routed, note = self._route_to_account_owner(lead, env, touched)
        if routed:
            return
        attrs, origin = profile_of(lead.facts)  # every fact known now, as the decision is taken
        best = best_of_profile(attrs, origin, self.rules.personas)
        attrs["persona"] = best.persona if best else None
        spec = match_queue(routing, attrs)
        if spec is None:
            reason = note + "no routing queue matches the lead's profile"
            lead.routing_failed(queue=None, reason=reason, trigger=env.id, at=at)
            return
        state = self._load_shared(RoutingQueue, queue_id(spec.id), spec.id, touched)
        roster = self._peek_roster(touched)
        choice = choose(spec, state, roster)
        if choice.rep is None:
            lead.routing_failed(queue=spec.id, reason=note + choice.why, trigger=env.id, at=at)
            return
        state.assign(
            lead_key=str(lead.id),  # the id, not the key: queues outlive a lead's erasure
            rep=choice.rep,
            strategy=spec.strategy,
            why=choice.why,
            current=choice.current,
            at=at,
        )
        lead.route(
            owner=choice.rep,
            queue=spec.id,
            strategy=spec.strategy,
            why=note + choice.why,
            trigger=env.id,
            at=at,
        )

    def _route_to_account_owner(
        self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]
    ) -> tuple[bool, str]:
        """A lead matched to an account with an available owner goes to that owner, before any
        queue (docs/accounts.md#account-owner-routing); (False, note): the queues decide, and
        the note (the owner being away, or "") goes first in their reason. The match is the
        projector's rules over the write-side account directory (`match_for_routing`)."""
        signals = lead_signals(str(lead.id), lead)
        if signals is None:
            return False, ""
        match, found, why = self._match_now(signals, touched)
        if match is None:  # candidates tied past `tier`: the queues decide, and say why
            return False, f"{why}; "
        if match.account_id is None:
            return False, ""
        owner = found[match.account_id].owner
        if owner is None:
            return False, ""
        roster = self._peek_roster(touched)
        if roster is not None and not roster.available.get(owner, True):
            # the owner is away: the queues decide, and their reason says so
            return False, f"account {match.account_id}'s owner {owner} is unavailable; "
        key = match.account_id
        why = (
            f"account {key} is owned by {owner}: the account owner comes before any queue"
            if match.rule == "explicit"
            else f"matched to account {key} by {match.rule} ({match.reason}); account {key} is "
            f"owned by {owner}: the account owner comes before any queue"
        )
        lead.route(
            owner=owner,
            queue=ACCOUNT_OWNER,
            strategy="account_owner",
            why=why,
            trigger=env.id,
            at=env.occurred_at,
        )
        return True, ""

    def _match_now(
        self, signals: LeadSignals, touched: dict[UUID, Aggregate]
    ) -> tuple[Match | None, dict[str, AccountProfile], str]:
        """The lead's account as the projector would match it now, from the account directory
        and this batch's accounts (None: a tie ingest cannot break), the accounts read, and
        why there is no match (the tied candidates, by id) when it is None."""
        rules = self.rules.accounts.matching
        args = (
            signals.account,
            signals.email_domain,
            normalise_name(signals.company, rules.legal_suffixes),
        )
        found = {a.account_id: a for a in self._candidates(*args)}
        # accounts updated in this batch, not committed yet: as they are now
        batch = AccountDirectory()
        batch.put(self._batch_accounts.changed_rows(touched))
        found.update((a.account_id, a) for a in batch.candidates(*args))
        if not found:
            return match_lead(signals, match_index([], [], rules), rules), found, ""
        decided = match_for_routing(signals, found.values(), rules)
        return decided.match, found, decided.why

    def _note_provisional(self, lead: Lead, env: Envelope, touched: dict[UUID, Aggregate]) -> None:
        """A lead no rule matches, on a business e-mail domain, is noted on the domain's
        provisional account, which opens (claims the domain) at `min_leads` such leads
        (docs/accounts.md#provisional-accounts)."""
        provisional = self.rules.accounts.provisional
        assert provisional is not None
        signals = lead_signals(str(lead.id), lead)
        domain = signals.email_domain if signals else None
        if signals is None or not domain or domain in self.rules.accounts.matching.free_mail:
            return
        match, _, _ = self._match_now(signals, touched)
        if match is None or match.account_id is not None:
            return  # matched (or several accounts tie for it): no provisional account
        key = provisional_key(domain)
        account = self._load_shared(Account, account_id(key), key, touched)
        if account.opened and not account.closed:
            return  # adopted: the domain is a CRM account's now (or ours, not indexed yet)
        account.note_lead(lead_id=str(lead.id), occurred_at=env.occurred_at)
        if len(account.noted) < provisional.min_leads:
            return
        persons = self._persons(account.noted, touched)
        if persons < provisional.min_leads:
            return
        leads = len(account.noted)
        if account.closed:  # released below min_leads people once: open again now
            account.reopen(occurred_at=env.occurred_at, leads=leads, persons=persons)
        else:
            account.open(occurred_at=env.occurred_at, leads=leads, persons=persons)

    def _persons(self, lead_ids: Iterable[str], touched: dict[UUID, Aggregate]) -> int:
        """How many people `lead_ids` are: two keys of one person (linked, merged:
        docs/identity.md) count once. Each person as this batch sees it (its own leads and
        `Kin`, the others as committed), read without claiming any `Kin`."""

        def read_kin(lead_id: UUID) -> Kin:
            found = touched.get(kin_id(lead_id))
            if isinstance(found, Kin):
                return found
            kin: Any = None
            for stored in self.recorder.select_events(kin_id(lead_id)):
                kin = self.sealed_mapper.to_domain_event(stored).mutate(kin)
            return cast(Kin, kin) if kin is not None else Kin(str(lead_id))

        seen: set[UUID] = set()
        people = 0
        for lead_id in sorted(UUID(i) for i in lead_ids):
            if lead_id in seen:
                continue
            member = touched.get(lead_id)
            lead = member if isinstance(member, Lead) else self._peek_lead(lead_id)
            if lead is None:
                continue
            view = person_routing.PersonView(lead, touched, read_kin, self._peek_lead)
            seen |= set(view.members) | {lead_id}
            people += 1
        return people

    def _adopt_provisional(
        self, account: Account, env: Envelope, touched: dict[UUID, Aggregate]
    ) -> None:
        """A CRM account claiming a domain (or a parent of it) adopts the open provisional
        accounts of that domain: they give it up, and their leads match the CRM account."""
        if account.provisional:
            return
        domains = list(fold(account.key, account.updates).domains)
        self._release_provisional(account, domains, env, touched)
        reads = self._directory_reads
        keys = set((reads or self.account_directory).provisional_under(domains))
        keys |= {
            a.key
            for a in touched.values()
            if isinstance(a, Account)
            and a.provisional
            and a.opened
            and under(a.key.removeprefix(PROVISIONAL), domains)
        }
        for key in sorted(keys):
            provisional = self._load_shared(Account, account_id(key), key, touched)
            provisional.adopt(by=account.key, occurred_at=env.occurred_at)

    def _release_provisional(
        self,
        account: Account,
        domains: list[str],
        env: Envelope,
        touched: dict[UUID, Aggregate],
    ) -> None:
        """A CRM account dropping a domain releases the provisional accounts on it that it
        adopted: another account claiming the domain (or a parent) adopts each instead; with
        none, it claims its domain again while `accounts.provisional` is set (its leads match
        it again), and otherwise stays adopted (its leads match no account)."""
        before = fold(account.key, account.updates[:-1]).domains
        dropped = [d for d in before if d not in domains]
        if not dropped:
            return
        for key in self.account_directory.provisional_keys_under(dropped):
            domain = key.removeprefix(PROVISIONAL)
            if under(domain, domains):
                continue  # still claimed by this account through another of its domains
            provisional = self._load_shared(Account, account_id(key), key, touched)
            if provisional.adopted_by != account.key:
                continue
            others = {a.account_id: a.domains for a in self._claiming(domain, touched)}
            others.pop(account.key, None)
            if others:
                by = min(others)  # the first by id: deterministic, any would do
                provisional.release(by=account.key, occurred_at=env.occurred_at)
                provisional.adopt(by=by, occurred_at=env.occurred_at)
            elif (rule := self.rules.accounts.provisional) is not None:
                # reopens by the rules, as at opening: its noted leads still min_leads people
                provisional.release(
                    by=account.key,
                    occurred_at=env.occurred_at,
                    leads=len(provisional.noted),
                    persons=self._persons(provisional.noted, touched),
                    min_leads=rule.min_leads,
                )

    def _candidates(
        self, account: str | None, email_domain: str | None, company_words: str | None
    ) -> list[AccountProfile]:
        """The directory's candidates, read once per batch during an ingest."""
        reads = self._directory_reads
        source = reads if reads is not None else self.account_directory
        return source.candidates(account, email_domain, company_words)

    def _claiming(self, domain: str, touched: dict[UUID, Aggregate]) -> list[AccountProfile]:
        """The CRM accounts claiming `domain` or a parent: the directory's, as this batch's
        updates leave them."""
        found = {
            a.account_id: a
            for a in self._candidates(None, domain, None)
            if not a.account_id.startswith(PROVISIONAL)
        }
        for a in touched.values():
            if isinstance(a, Account) and not a.provisional and a.updates:
                profile = fold(a.key, a.updates)
                found.pop(a.key, None)
                if set(domain_parents(domain)).intersection(profile.domains):
                    found[a.key] = profile
        return list(found.values())

    def _load_shared(
        self, cls: type[A], agg_id: UUID, key: str, touched: dict[UUID, Aggregate]
    ) -> A:
        """Load an aggregate other consumers also write (queues, roster) fresh from the store.

        Two writers that start from the same version conflict on save; the loser's batch is
        retried on a fresh read, so a turn is never given twice. A cached copy is brought up to
        date with only the events stored since (these streams grow for as long as the engine
        runs: replaying a whole queue every batch would cost more every day).
        """
        if agg_id in touched:
            return cast(A, touched[agg_id])
        if agg_id in self._shared_ahead:
            ahead = self._read_ahead(agg_id)
            if ahead is not None:
                touched[agg_id] = ahead
                return cast(A, ahead)
        if self.locks is not None:
            self.locks.before_read(agg_id)
        agg = self._fast_forward(agg_id)
        if agg is None:
            return self._load(cls, agg_id, key, touched)
        touched[agg_id] = agg
        return cast(A, agg)

    def _fast_forward(self, agg_id: UUID, stream: Sequence[Any] | None = None) -> Aggregate | None:
        """The cached aggregate plus whatever other writers stored since (`stream` if given:
        its stored events, read ahead; else read now); None if it is not cached. It stays
        cached: what it applied is stored."""
        cache = self.repository.cache
        if cache is None:
            return None
        try:
            agg = cast(Aggregate, cache.get(agg_id))
        except KeyError:
            return None
        if stream is None:
            stream = self.recorder.select_events(agg_id, gt=agg.version)
        for stored in stream:
            if stored.originator_version > agg.version:
                event: Any = self.mapper.to_domain_event(stored)
                agg = cast(Aggregate, event.mutate(agg))
        return agg

    def _peek_roster(self, touched: dict[UUID, Aggregate]) -> Roster | None:
        """The roster as stored (read once per batch), or as this batch changed it."""
        rid = roster_id()
        if rid in touched:
            return cast(Roster, touched[rid])
        if rid in self._peeked:
            return cast(Roster | None, self._peeked[rid])
        ahead = self._shared_ahead.get(rid)
        if ahead is not None and not ahead[2] and not ahead[3] and not self._cached(rid):
            del self._shared_ahead[rid]  # read ahead: none is stored
            self._peeked[rid] = None
            return None
        roster = self._read_ahead(rid) or self._fast_forward(rid)
        if roster is None:
            try:
                roster = self.repository.get(rid)
            except AggregateNotFoundError:
                roster = None
        self._peeked[rid] = roster
        return cast(Roster | None, roster)

    def _create_unknown(self, events: Sequence[Envelope]) -> dict[UUID, Aggregate]:
        """Start the batch's brand-new leads and campaigns, and load the stored ones it does
        not have cached, without one SELECT each.

        One query reads every stored event of the batch's uncached aggregates: those with none
        are created here, the others folded from their events (as `repository.get` would, and
        cached as it would). A batch redone after a conflict, or the first after a rebalance
        (which clears the cache), reloads its leads in one round trip instead of hundreds.

        They are returned, not put in the batch's `touched`: `_load` moves each there when the
        batch first touches it, so the batch saves its aggregates in the order it touched them,
        whatever was cached (the log's order, and so every position, does not depend on the
        cache: tests/integration/test_bounded_memory.py).
        """
        ready: dict[UUID, Aggregate] = {}
        self._shared_ahead = {}
        if datastore_of(self.recorder) is None:
            return ready  # the in-memory store: a lookup there costs nothing
        wanted: dict[UUID, tuple[type[Aggregate], str]] = {}
        shared: dict[UUID, tuple[type[Aggregate], str]] = {}
        #: cached accounts, by their cached version: the projector's settling records its
        #: decisions on them (`record_account_decisions`), so the cache may be behind the store
        behind: dict[UUID, int] = {}
        for env in events:
            if env.is_roster_event:
                continue
            if env.is_campaign_event:
                agg_id, cls = campaign_id(env.subject), cast(type[Aggregate], Campaign)
            elif env.is_account_event:
                agg_id, cls = account_id(env.subject), cast(type[Aggregate], Account)
            else:
                agg_id, cls = self.lead_id(env.subject), cast(type[Aggregate], Lead)
                shared[kin_id(agg_id)] = (Kin, str(agg_id))
            if agg_id not in wanted and not self._cached(agg_id):
                wanted[agg_id] = (cls, env.subject)
            elif cls is Account and agg_id not in wanted:  # the projector writes them too
                behind[agg_id] = self._cached_version(agg_id)
        if shared and self.rules.routing is not None:  # a lead event may route its lead
            for spec in self.rules.routing.queues:
                shared[queue_id(spec.id)] = (RoutingQueue, spec.id)
            shared[roster_id()] = (Roster, ROSTER_KEY)
        # what routing reads (one round trip each, before) in the same query, from the cached
        # version on; not a contended one (read under its lock, `_load_shared`)
        if self.locks is not None:  # the projector writes them too: turns, not redos
            self.locks.hold(
                account_id(env.subject)
                for env in events
                if env.is_account_event and not env.subject.startswith(PROVISIONAL)
            )
        after = dict.fromkeys(wanted, 0)
        shared_after = {
            i: self._cached_version(i)
            for i in shared
            if self.locks is None or not self.locks.is_contended(i)
        }
        after.update(shared_after)
        after.update((i, v) for i, v in behind.items() if v)
        if not after:
            return ready
        streams = streams_after(self.recorder, after) or {}
        for agg_id in behind:
            caught_up = self._fast_forward(agg_id, streams.get(agg_id, []))
            if caught_up is not None:
                ready[agg_id] = caught_up
        self._shared_ahead = {
            i: (*shared[i], v, streams.get(i, [])) for i, v in shared_after.items()
        }
        cache = self.repository.cache
        for agg_id, (cls, key) in wanted.items():
            stream = streams.get(agg_id)
            if not stream:
                ready[agg_id] = _new(cls, agg_id, key)
                continue
            agg: Any = None
            for stored in stream:
                event: Any = self.mapper.to_domain_event(stored)
                agg = event.mutate(agg)
            ready[agg_id] = agg
            if cache is not None:
                cache.put(agg_id, agg)
        return ready

    def _cached_version(self, agg_id: UUID) -> int:
        """The cached aggregate's version; 0 if not cached."""
        cache = self.repository.cache
        if cache is None:
            return 0
        try:
            return int(cache.get(agg_id).version)
        except KeyError:
            return 0

    def _read_ahead(self, agg_id: UUID) -> Aggregate | None:
        """A shared aggregate from the batch's read-ahead (`_create_unknown`): the cached one
        brought up to date, else the stored one folded (and cached), else a new one; None if
        it was not read ahead. As fresh as a read now: a write by another consumer since
        fails this batch's save on the version, and the batch is redone on fresh reads."""
        ahead = self._shared_ahead.pop(agg_id, None)
        if ahead is None:
            return None
        cls, key, version, stream = ahead
        cache = self.repository.cache
        agg: Any = None
        if cache is not None:
            with contextlib.suppress(KeyError):
                agg = cache.get(agg_id)
        if version and (agg is None or agg.version < version):
            return None  # evicted since: the events read ahead are not all of them
        if agg is None and not stream:
            return _new(cls, agg_id, key)
        for stored in stream:
            if agg is None or stored.originator_version > agg.version:
                event: Any = self.mapper.to_domain_event(stored)
                agg = event.mutate(agg)
        if cache is not None:
            cache.put(agg_id, agg)
        return cast(Aggregate, agg)

    def _cached(self, agg_id: UUID) -> bool:
        cache = self.repository.cache
        if cache is None:
            return False
        try:
            cache.get(agg_id)
        except KeyError:
            return False
        return True

    def _load(self, cls: type[A], agg_id: UUID, key: str, touched: dict[UUID, Aggregate]) -> A:
        if agg_id in touched:
            return cast(A, touched[agg_id])
        if agg_id in self._ready:
            agg = cast(A, self._ready.pop(agg_id))
            touched[agg_id] = agg
            return agg
        try:
            agg = cast(A, self.repository.get(agg_id))
        except AggregateNotFoundError:
            agg = _new(cls, agg_id, key)
        touched[agg_id] = agg
        return agg

    def _save(self, aggregates: list[Aggregate], tracking: Tracking | None) -> None:
        processing = ProcessingEvent[UUID](tracking=tracking)
        for agg in aggregates:  # `collect_events` without its runtime Protocol checks (slow)
            processing.events.extend(agg.collect_events())
            processing.aggregates[agg.id] = agg
        if not processing.events and tracking is None:
            return
        # a shared aggregate's writer waits while another holds it (engine.contention)
        written = {e.originator_id for e in processing.events}
        held = self.locks.held if self.locks is not None else frozenset()
        processing.saved_kwargs["advisory_locks"] = sorted(
            lock_key(a.id) for a in aggregates if _shared(a) and a.id in written - held
        )
        # every new lead's key in one round trip, before the mapper seals their personal data
        self.keys.ensure(
            e.originator_id
            for e in processing.events
            if isinstance(e, Lead.Started)  # its key is sealed
            or (
                isinstance(e, Lead.FactRecorded)
                and (present_pii(e.event_type, e.data) or getattr(e, "extra", None))
            )
        )
        recordings = self._record(processing)
        self._notify(recordings)

    def _note_mql(self, lead: Lead) -> None:
        """An MQL `record` just took: its reasons from the facts as they are at the decision
        (later facts of the same batch must not change them)."""
        for event in reversed(lead.pending_events):
            if isinstance(event, Lead.FactRecorded):
                return  # the fact this `record` added: nothing earlier is new
            if isinstance(event, Lead.MarketingQualified):
                self._mql_reasons[(lead.id, event.originator_version)] = mql_reasons(
                    event, lead, self.rules
                )

    def _record(self, processing: ProcessingEvent[UUID]) -> Any:
        """Record, with the outbound record of every decision among the events (and, for a
        lead forgotten now, its older records rewritten to its pseudonym): one transaction."""
        if self._dup_batch:  # in the save's transaction (engine/postgres/chain.py)
            processing.saved_kwargs["duplicate_writes"] = self._dup_batch
        if self._new_pairs and self.outbox:  # in the save's transaction (identities.py)
            processing.saved_kwargs["event_identities"] = self._pair_rows()
        if self.outbox:
            records, erasures = self._outbound(processing)
            if records:
                processing.saved_kwargs["outbox"] = records
            if erasures:
                processing.saved_kwargs["outbox_erasures"] = erasures
        directory = _directory_rows(processing)
        if directory and self.outbox:  # written in the same transaction
            processing.saved_kwargs["account_directory"] = directory
        try:
            recordings = super()._record(processing)
        finally:
            self._mql_reasons.clear()
        if directory and not self.outbox:
            self.account_directory.put(directory)
        return recordings

    def _outbound(self, processing: ProcessingEvent[UUID]) -> tuple[list[Record], list[Erasure]]:
        records: list[Record] = []
        erasures: list[Erasure] = []
        for event in processing.events:
            kind = DECISION_TYPES.get(type(event))
            if kind is None:
                if type(event) in ACCOUNT_TYPES:  # a decision about an account
                    account = cast(Account, processing.aggregates[event.originator_id])
                    about = account_cloudevent(event, account.id, account.key)
                    records.append(
                        Record(
                            account.id,
                            event.originator_version,
                            ACCOUNT_TYPES[type(event)],
                            account.key,
                            encode(about),
                        )
                    )
                continue
            lead = cast(Lead, processing.aggregates[event.originator_id])
            lead_id, version = lead.id, event.originator_version
            key = pseudonym(lead_id) if lead.erased_at is not None else str(lead.key)
            reasons = self._mql_reasons.get((lead_id, version))
            doc = to_cloudevent(event, lead_id, key, self.rules, lead, reasons)
            assert doc is not None
            records.append(Record(lead_id, version, kind, key, encode(doc)))
            if isinstance(event, Lead.Erased):
                erasures.append(Erasure(lead_id, key))
        return records, erasures

    def record_account_decisions(
        self,
        mqas: Sequence[tuple[MqaDecision, AccountScore | None]],
        members: Sequence[MemberDecision],
    ) -> dict[str, dict[str, Any]]:
        """Record the decisions the projector's settling took about accounts: MQAs (each
        unless the account has one recorded already) and lead-to-account matches (those that
        change something), with their outbound records, in one transaction. Returns each MQA
        account's stored decision (`Account.mqa`: the one recorded before, if any). The
        accounts' streams are written at ingest too: a save that lost the race is tried again
        on a fresh read; the cached account is trusted otherwise."""
        if not mqas and not members:
            return {}
        # the consumers write CRM accounts too: wait for a batch writing one to commit (its
        # lock) rather than make it redo its batch; provisional ones take turns as shared ones
        keys = {d.account_id for d, _ in mqas} | {d.account for d in members}
        if self.locks is not None:
            self.locks.hold(account_id(k) for k in keys if not k.startswith(PROVISIONAL))
        try:
            return self._record_account_decisions(mqas, members)
        finally:
            if self.locks is not None:
                self.locks.release()

    def _record_account_decisions(
        self,
        mqas: Sequence[tuple[MqaDecision, AccountScore | None]],
        members: Sequence[MemberDecision],
    ) -> dict[str, dict[str, Any]]:
        for attempt in range(5):
            touched: dict[UUID, Aggregate] = {}
            stored: dict[str, dict[str, Any]] = {}
            for decision, result in mqas:
                account = self._load(
                    Account, account_id(decision.account_id), decision.account_id, touched
                )
                if account.mqa is None:
                    account.qualify(
                        occurred_at=decision.at,
                        trigger_event_id=decision.trigger,
                        rules_version=decision.rules,
                        reason=decision.reason,
                        score=result.total if result else 0.0,
                        fit=result.fit if result else 0.0,
                        engagement=result.engagement if result else 0.0,
                        members=result.members if result else 0,
                        engaged=result.engaged if result else 0,
                    )
                assert account.mqa is not None
                stored[decision.account_id] = account.mqa
            for d in members:
                account = self._load(Account, account_id(d.account), d.account, touched)
                account.decide_member(
                    lead_id=d.lead_id,
                    joined=d.joined,
                    rule=d.rule,
                    reason=d.reason,
                    candidates=list(d.candidates),
                    rules_version=d.rules_version,
                    decided_at=d.decided_at,
                    baseline=d.baseline,
                )
            try:
                self._save(list(touched.values()), None)
            except BaseException as exc:
                # changed in memory, not stored: never left in the cache (a retry after an
                # outage would write the next version on top of versions never stored)
                self._evict(touched)
                if not isinstance(exc, IntegrityError) or attempt == 4:
                    raise
                continue
            return stored
        raise AssertionError("unreachable")

    def decide_duplicate(
        self, winner: UUID, loser: UUID, *, accept: bool, by: str, reason: str, at: datetime
    ) -> list[Pair]:
        """Accept (an engine merge naming `by` and `reason`, undone by lead.unmerged) or
        dismiss (never suggested again) the open duplicate suggestions of `loser` being
        `winner`'s duplicate, recorded on the loser's stream; the pairs' new state in the same
        transaction (engine/services/duplicates.py). A version race with a consumer writing
        the lead is retried on fresh reads."""
        for name, value in (("--reason", reason), ("--by", by)):
            if not value.strip():
                raise LeadEngineError(f"a duplicate decision needs a non-blank {name}")
        try:  # the limits an upstream lead.merged has: the decision is relayed like one
            LeadMerged.model_validate({"winner": str(winner), "by": by, "reason": reason})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "--" + str(first["loc"][0])
            raise LeadEngineError(f"duplicate decision {name}: {first['msg']}") from None
        if any(printable(v) != v for v in (by, reason)):
            raise LeadEngineError("duplicate decision: --by and --reason may not hold U+0000")
        pairs = self.duplicates.open_pairs(winner, loser)
        if not pairs:
            raise LeadEngineError(
                f"no open duplicate suggestion of lead {loser} as a duplicate of lead {winner}: "
                "never suggested, or already accepted, dismissed or merged upstream "
                "(`leadengine report duplicates` lists the open ones: winner_id, then loser_id)"
            )
        for attempt in range(5):
            touched: dict[UUID, Aggregate] = {}
            batch = self.duplicates.batch()
            self._forget(loser)  # another process may have written it: read the store
            try:
                lead = cast(Lead, self.repository.get(loser))
                touched[loser] = lead

                kin = partial(self._kin, touched)
                duplicates.decide(batch, lead, pairs, kin, accept=accept, by=by, reason=reason,
                                  at=at)  # fmt: skip
                self._dup_batch = batch
                self._save(list(touched.values()), None)
            except IntegrityError:
                self._evict(touched)
                if attempt == 4:
                    raise
                continue
            finally:
                self._dup_batch = self.duplicates.batch()
                if self.locks is not None:
                    self.locks.release()
            self.duplicates.commit(batch)  # the in-memory store's; PostgreSQL saved it
            return pairs
        raise AssertionError("unreachable")

    def forget(self, key: str, *, reason: str, by: str, at: datetime) -> Forgotten:
        """Shred the key of every lead of the person `key` belongs to (each alias and merged
        lead), then record `Erased` on each; safe to run again (finishes a half one)."""
        if not reason.strip():
            raise LeadEngineError(
                "forget needs a --reason (e.g. a ticket number; nothing personal)"
            )
        lead_id = self.lead_id(key)
        others = [i for i in self.identity_map().members(lead_id) if i != lead_id]
        self.duplicates.forget([lead_id, *others])  # the person's hashes and duplicate pairs
        first = self._forget_lead(lead_id, reason=reason, by=by, at=at)
        if first is None:
            raise LeadNotFound(key)
        first = replace(first, key=key)
        members = tuple(
            f for i in others if (f := self._forget_lead(i, reason=reason, by=by, at=at))
        )
        values = first.personal_values.union(
            *(m.personal_values for m in members), (m.key for m in members if not m.already)
        )
        return replace(first, personal_values=frozenset(values), members=members)

    def _forget_lead(
        self, lead_id: UUID, *, reason: str, by: str, at: datetime
    ) -> Forgotten | None:
        """Forget one lead (None if it has no stream: a key only named by a link)."""
        self._forget(lead_id)
        lead = self._lead_by_id(lead_id)
        if lead is None:
            return None
        values = frozenset(
            str(f.data[name]) for f in lead.facts for name in present_pii(f.type, f.data)
        )
        already, key = lead.erased_at is not None, lead.key
        shredded = self.keys.shred(lead.id)
        snapshots.drop(self.recorder, [lead.id])  # sealed under the shredded key: unreadable
        if not already:
            lead.erase(reason=reason, by=by, at=at)
            try:
                self._save([lead], None)
            finally:
                self._forget(lead.id)
        return Forgotten(key, lead.id, pseudonym(lead.id), already, shredded, values)

    def clear_cache(self) -> None:
        """Forget cached aggregates (e.g. when another writer may have moved them)."""
        cache = self.repository.cache
        if isinstance(cache, LRUCache):  # a new one: LRUCache.clear() keeps its dict (9.5.6)
            self.repository.cache = LRUCache(maxsize=cache.maxsize)
        elif cache is not None:
            cache.cache.clear()

    def _evict(self, touched: dict[UUID, Aggregate]) -> None:
        for agg_id in touched:
            self._forget(agg_id)

    def _forget(self, agg_id: UUID) -> None:
        """Drop one aggregate from the cache, so the next load reads the store."""
        cache = self.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(agg_id, evict=True)


def pair_of(env: Envelope) -> tuple[str, str]:
    """An event's identity: its CloudEvent (source, id)."""
    return env.source, env.id


def link_of(event: Lead.Linked) -> Link:
    return Link(
        event.relation,
        event.originator_id,
        event.other_id,
        event.occurred_at,
        event.source,
        event.event_id,
        event.by,
        event.reason,
        getattr(event, "subject_wins", False),
    )


#: the `queue` of a Routed decision that gave a lead to its account's owner
ACCOUNT_OWNER = "account-owner"
#: where a lead fact keeps the event's `account` attribute
ACCOUNT_ATTRIBUTE = "account"


def lead_account(lead: Lead) -> str | None:
    """The account the lead's latest fact naming one names (event time, then arrival)."""
    named = [
        (f.occurred_at, i, f.data[ACCOUNT_ATTRIBUTE])
        for i, f in enumerate(lead.facts)
        if f.data.get(ACCOUNT_ATTRIBUTE)
    ]
    return max(named)[2] if named else None


def _directory_rows(processing: ProcessingEvent[UUID]) -> list[account_directory.Row]:
    """The account_directory rows of the accounts whose profile this save updates."""
    updated = {e.originator_id for e in processing.events if isinstance(e, Account.Updated)}
    rows = []
    for agg_id in sorted(updated):
        account = cast(Account, processing.aggregates[agg_id])
        rows.append(account_directory.row_of(fold(account.key, account.updates)))
    return rows


def _shared(agg: Aggregate) -> bool:
    """Written by every consumer (not partitioned by lead): a routing queue, the roster, a
    lead's `Kin`."""
    return isinstance(agg, RoutingQueue | Roster | Kin) or (
        isinstance(agg, Account) and agg.provisional  # written by every lead's consumer
    )


def _new(cls: type[A], agg_id: UUID, key: str) -> A:
    if issubclass(cls, Lead):
        return cast(A, cls.start(key, agg_id))
    return cls(key=key)  # type: ignore[call-arg]  # their ids are not personal: uuid5 of the key


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))
