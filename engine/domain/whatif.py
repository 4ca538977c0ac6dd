"""What-if: replay every lead's facts under other rules, write nothing, say what would change.

A pure fold over the log: each lead's facts are recorded, in arrival order, on the lean fold
(engine/domain/fold.py `LeanLead`: the step function that takes the real decisions, without
building stored events), once under the current rules and once under the new
ones (from `since` on; before it the current rules decide). Scores, MQL decisions and stage
moves are replayed; routing is not simulated (it depends on shared queue state, not on a lead).
MQL decisions use each in-memory lead's running score (engine/domain/scorestate.py), so a fact costs
O(1) in scoring; each lead's final score is the full recomputation.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from engine.aggregates.lead import Lead
from engine.domain.accounts.matching import LeadSignals
from engine.domain.accounts.profile import AccountProfile
from engine.domain.accounts.scoring import Member
from engine.domain.accounts.whatif import member, qualifying, signals
from engine.domain.fold import EPOCH, LeanLead
from engine.domain.lifecycle import QUALIFIABLE, RANK
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scorestate import ScoreState, ruled_out, same_scoring

if TYPE_CHECKING:  # types only: the fold reads whatever log it is handed
    from eventsourcing.persistence import ApplicationRecorder, StoredEvent

BUCKETS = tuple(range(0, 100, 10))
MQL_NOTE = (
    "`mql` counts leads with an MQL decision; `reached_mql` counts leads that reached mql or any "
    "later stage, as `report funnel` does: the difference is leads sales took (accepted, "
    "qualified, ...) before any MQL decision, so their MQL is implied by the skip"
)

MQA_NOTE = (
    "`mqa` counts the accounts that meet the MQA rule at the end of the replay, each rules "
    "matching and scoring the replayed leads; a recorded MQA is kept once taken, so the "
    "recorded count can be higher (docs/accounts.md)"
)


@dataclass(frozen=True, slots=True)
class FactIn:
    lead_key: str
    event_id: str
    type: str
    source: str
    occurred_at: datetime
    data: dict[str, Any]


@dataclass
class Outcome:
    stage: str
    mql: bool  # an MQL decision was taken (MarketingQualified)
    score: float
    reached_mql: bool = False  # reached mql or a later stage, skips included (as the funnel)
    #: what account matching reads of the lead, and it as a member under these rules (only
    #: when the what-if is over accounts too; None: not asked, or no fact)
    account: tuple[LeadSignals, Member] | None = field(default=None, compare=False)


@dataclass
class WhatIf:
    rules_old: str
    rules_new: str
    since: datetime | None
    facts: int = 0  # every fact read: each lead's state is rebuilt from its first
    leads: int = 0
    #: the facts (and their leads) from `since` on, the ones the new rules decide: with no
    #: `since`, all of them; a fact before it is read only to rebuild its lead's state
    facts_in_window: int = 0
    leads_in_window: int = 0
    old: dict[str, Outcome] = field(default_factory=dict)
    new: dict[str, Outcome] = field(default_factory=dict)
    #: the accounts meeting the MQA rule at the end, under each rules (None: no accounts given)
    mqa_old: list[str] | None = None
    mqa_new: list[str] | None = None
    #: the worker processes folded in, and why fewer than asked (None: as asked, or not asked);
    #: neither is in the summary, which is the same for any number of workers
    workers: int = 1
    workers_note: str | None = None

    def summary(self, limit: int = 20) -> dict[str, Any]:
        stages = sorted({o.stage for o in (*self.old.values(), *self.new.values())})
        old_stages = Counter(o.stage for o in self.old.values())
        new_stages = Counter(o.stage for o in self.new.values())
        old_buckets = Counter(_bucket(o.score) for o in self.old.values())
        new_buckets = Counter(_bucket(o.score) for o in self.new.values())
        moved = [
            {
                "lead": key,
                "old_stage": self.old[key].stage,
                "new_stage": self.new[key].stage,
                "old_mql": self.old[key].mql,
                "new_mql": self.new[key].mql,
                "old_score": self.old[key].score,
                "new_score": self.new[key].score,
            }
            for key in sorted(self.old)
            if (self.old[key].stage, self.old[key].mql) != (self.new[key].stage, self.new[key].mql)
        ]
        return {
            "rules_old": self.rules_old,
            "rules_new": self.rules_new,
            "since": self.since.isoformat() if self.since else None,
            "facts": self.facts,
            "leads": self.leads,
            "facts_in_window": self.facts_in_window,
            "leads_in_window": self.leads_in_window,
            "mql_old": sum(o.mql for o in self.old.values()),
            "mql_new": sum(o.mql for o in self.new.values()),
            "reached_mql_old": sum(o.reached_mql for o in self.old.values()),
            "reached_mql_new": sum(o.reached_mql for o in self.new.values()),
            "mql_note": MQL_NOTE,
            "leads_changed": len(moved),
            **self._accounts(),
            "stages": [
                {
                    "stage": s,
                    "old": old_stages.get(s, 0),
                    "new": new_stages.get(s, 0),
                    "change": new_stages.get(s, 0) - old_stages.get(s, 0),
                }
                for s in stages
            ],
            "scores": [
                {
                    "bucket": f"{b}-{b + 10 if b < 90 else 100}",
                    "old": old_buckets.get(b, 0),
                    "new": new_buckets.get(b, 0),
                }
                for b in BUCKETS
            ],
            "changed": moved[:limit],
        }

    def _accounts(self) -> dict[str, Any]:
        if self.mqa_old is None or self.mqa_new is None:
            return {}
        old, new = set(self.mqa_old), set(self.mqa_new)
        return {
            "mqa_old": len(old),
            "mqa_new": len(new),
            "mqa_gained": sorted(new - old),
            "mqa_lost": sorted(old - new),
            "mqa_note": MQA_NOTE,
        }


def _bucket(score: float) -> int:
    return min(90, int(score // 10) * 10)


#: facts a worker process is worth starting for (`auto_workers`), and the most started
PER_WORKER = 50_000
MAX_WORKERS = 4
CHUNK = 1_000  # leads per task handed to a worker


def worker_count(
    asked: int | None, facts: int, tasks: int, chunk: int = CHUNK
) -> tuple[int, str | None]:
    """The worker processes a replay of `facts` facts in `tasks` chunks (of `chunk` leads)
    uses when `asked` for (None: `auto_workers`), and why, when it is fewer than asked: at
    most `MAX_WORKERS` ("cap"), and no more than there are chunks to fold."""
    if asked is None:
        return max(1, min(auto_workers(facts), tasks)), None
    used = max(1, min(asked, MAX_WORKERS, tasks))
    if used >= asked:
        return used, None
    if used == MAX_WORKERS:
        return used, "cap"
    return used, f"{tasks:,} chunk{'' if tasks == 1 else 's'} of up to {chunk:,} leads"


def auto_workers(facts: int) -> int:
    """One process per CPU, up to `MAX_WORKERS`, and one per `PER_WORKER` facts at least."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, MAX_WORKERS, facts // PER_WORKER))


def replay(
    facts: Iterable[FactIn],
    current: Rules,
    new: Rules,
    *,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = 1,
    chunk: int = CHUNK,
    accounts: Sequence[AccountProfile] | None = None,
) -> WhatIf:
    """Fold `facts` (in arrival order) under both rule sets; nothing is written anywhere.

    Leads are independent, so each lead's facts (kept in arrival order) are folded on their
    own on the lean fold (engine/domain/fold.py), in `workers` processes (None: `auto_workers`);
    the outcomes are merged in the order the leads first appear, so the result is the same
    whatever the number of workers. `progress` gets the count of facts folded so far.
    With `accounts`, also which of them meet the MQA rule under each rules
    (engine/domain/accounts/whatif.py): each worker hands back its leads' account signals and
    engagement, and the accounts are matched and scored here once all leads are in."""
    result = WhatIf(current.ref, new.ref, since)
    leads: dict[str, list[FactIn]] = {}
    n, in_window, window_leads = 0, 0, set[str]()
    for fact in facts:
        n += 1
        if since is None or fact.occurred_at >= since:  # as `_fold_lead` picks the new rules
            in_window += 1
            window_leads.add(fact.lead_key)
        got = leads.get(fact.lead_key)
        if got is None:
            leads[fact.lead_key] = [fact]
        else:
            got.append(fact)
    result.facts, result.leads = n, len(leads)
    result.facts_in_window, result.leads_in_window = in_window, len(window_leads)
    groups = list(leads.values())
    job = Job(groups, current, new, since, same_scoring(current, new), accounts is not None)
    chunks = [(start, start + chunk) for start in range(0, len(groups), chunk)]
    count, result.workers_note = worker_count(workers, n, len(chunks), chunk)
    result.workers = count
    done = 0
    for (start, end), outcomes in zip(chunks, _run(job, chunks, count), strict=True):
        for group, (old, new_) in zip(groups[start:end], outcomes, strict=True):
            key = group[0].lead_key
            result.old[key], result.new[key] = old, new_
            done += len(group)
        if progress:
            progress(done)
    if accounts is not None:
        result.mqa_old = qualifying(accounts, _members(result.old), current)
        result.mqa_new = qualifying(accounts, _members(result.new), new)
    return result


def _members(outcomes: dict[str, Outcome]) -> list[tuple[LeadSignals, Member]]:
    return [o.account for o in outcomes.values() if o.account is not None]


@dataclass(frozen=True, slots=True)
class Job:
    groups: list[list[FactIn]]
    current: Rules
    new: Rules
    since: datetime | None
    same: bool = False  # both rule sets score alike (`same_scoring`): one running score
    accounts: bool = False  # hand back each lead's account signals and engagement too

    @property
    def alike(self) -> dict[int, ScoringModel]:
        """The new rules' scoring served by the current one's (keyed by object identity: made
        from this job's own objects, so it holds in a worker's unpickled copy too)."""
        return {id(self.new): self.current} if self.same else {}


_JOB: Job | None = None  # in a worker process: the rules and options, without the facts


def _run(job: Job, chunks: list[tuple[int, int]], workers: int) -> Iterator[list[Pair]]:
    """Each chunk's outcomes, in chunk order: here, or in `workers` worker processes.

    Workers start from a fork server (a clean, single-threaded process), never by forking this
    one: a fork copies whatever locks this process's other threads (a progress bar's refresh,
    a Kafka client, a test runner's channel) held at that moment, and a worker that needs one
    waits forever. Each gets the rules once, and each chunk's facts as its task."""
    tasks = ([lead_rows(group) for group in job.groups[start:end]] for start, end in chunks)
    if workers <= 1 or len(chunks) <= 1:
        yield from (_fold_groups(task, job) for task in tasks)
        return
    methods = mp.get_all_start_methods()
    context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    rules = replace(job, groups=[])
    with context.Pool(workers, initializer=_start, initargs=(rules,)) as pool:
        yield from pool.imap(_fold_in_worker, tasks)


def _start(rules: Job) -> None:
    """A worker's start: the rules it folds under."""
    global _JOB
    _JOB = rules


def _fold_in_worker(groups: list[LeadRows]) -> list[Pair]:
    assert _JOB is not None
    return _fold_groups(groups, _JOB)


Pair = tuple["Outcome", "Outcome"]
#: a lead's key and its facts as plain tuples (event id, type, source, occurred at, data), in
#: arrival order: what a worker is handed (a tuple pickles a few times faster than a `FactIn`)
Row = tuple[str, str, str, datetime, dict[str, Any]]
LeadRows = tuple[str, list[Row]]


def lead_rows(facts: list[FactIn]) -> LeadRows:
    return facts[0].lead_key, [(f.event_id, f.type, f.source, f.occurred_at, f.data) for f in facts]


def _fold_groups(groups: list[LeadRows], job: Job) -> list[Pair]:
    return [_fold_lead(group, job) for group in groups]


def _fold_lead(group: LeadRows, job: Job) -> Pair:
    """One lead's facts, in arrival order, under the current rules and under the new ones.

    Both sides record the same facts and differ only where their MQL decisions do, so they are
    one lead (`_Twins`) until the first decision that differs, and two from there on."""
    current, new = job.current, job.new
    key, rows = group
    old_lead, new_lead = fold_pair(key, rows, job)
    old = _outcome(old_lead, current)
    # the same facts scored alike at the same moment: the same total (computed once)
    new_ = _outcome(new_lead, new, old.score if job.alike else None)
    if job.accounts:
        found = signals(key, old_lead)  # the same facts: the same signals under both
        if found is not None:
            old.account = (found, member(key, old_lead, current))
            new_.account = (found, member(key, new_lead, new))
    return old, new_


def fold_pair(key: str, rows: list[Row], job: Job) -> tuple[LeanLead, LeanLead]:
    """One lead's facts folded under the current rules and under the new ones (the new from
    `since` on): the same lead while their decisions agree (`_Twins`)."""
    current, new, since = job.current, job.new, job.since
    # both record the same facts, so they share running scores; one state serves both models
    # when they score alike (a what-if on the MQL rule alone)
    alike = job.alike
    old_lead = _Twins(key, running={}, alike=alike)
    new_lead: LeanLead = old_lead
    for row in rows:
        rules_new = new if since is None or row[3] >= since else current
        if new_lead is old_lead:
            old_lead.other = rules_new
            old_lead.record_fact(*row, current)
            if old_lead.twin is not None:
                new_lead = old_lead.twin
        else:
            old_lead.record_fact(*row, current)
            new_lead.record_fact(*row, rules_new)
    return old_lead, new_lead


class _Twins(LeanLead):
    """A what-if lead that is both sides while their MQL decisions agree: it records a fact
    once, decides under its own rules and under `other` (the other side's for that fact), and
    at the first decision that differs forks `twin`, the other side from there on, in the
    state before the decision and then deciding under `other`. Same facts and same decisions,
    same state: each side ends as if it had been folded on its own. Decisions record the
    running score (`decide_mql` without `exact`): what-if reports which were taken, not their
    values."""

    exact_decisions = False

    def __init__(
        self, key: str, *, running: dict[int, ScoreState], alike: dict[int, ScoringModel]
    ) -> None:
        super().__init__(key, running=running, alike=alike)
        self.other: Rules | None = None
        self.twin: _Twins | None = None

    def fork(self) -> _Twins:
        twin = super().fork()
        assert isinstance(twin, _Twins)
        return twin

    def _qualify(self, rules: Rules, trigger: str, at: datetime) -> bool:
        other = self.other
        if other is None or self.twin is not None:
            return super()._qualify(rules, trigger, at)
        clock = self.clock
        if self.stage not in QUALIFIABLE or clock is None:
            return False
        state = self._running(rules)
        if state is self._running(other) and ruled_out(
            state, self.facts, clock, rules.mql, other.mql
        ):
            return False  # neither side's rule can be met: as both `_decide` would find
        mine = self._decide(rules)
        theirs = mine if other is rules else self._decide(other)
        if (mine is None) != (theirs is None):
            twin = self.twin = self.fork()
            twin.other = None  # on its own from here
            if theirs is not None and twin._take(other, theirs, trigger, at):
                twin._restage(trigger)
        return mine is not None and self._take(rules, mine, trigger, at)


def _outcome(lead: LeanLead, rules: Rules, total: float | None = None) -> Outcome:
    reached = any(RANK.get(stage, -1) >= RANK["mql"] for stage in lead.reached)
    if total is None:
        total = final_total(lead, rules)
    return Outcome(lead.stage, lead.mql_rounds > 0, total, reached)


def final_total(lead: LeanLead, rules: Rules) -> float:
    """`lead.current_score(rules, explain=False).total`, from the lead's running score where
    it gives exactly that (`ScoreState.settled`): the facts since its last decision fed, O(1)
    each, instead of a full recomputation of every lead."""
    state = lead._running(rules)
    state.feed(lead.facts)
    settled = state.settled(lead.clock or EPOCH)
    if settled is None:
        return lead.current_score(rules, explain=False).total
    return settled[2]


class SealedEvents(Protocol):
    """Opens stored events whose personal data is sealed (engine/postgres/sealing.py)."""

    def prefetch_keys(self, stored: Iterable[StoredEvent]) -> None: ...

    def to_domain_event(self, stored_event: StoredEvent) -> Any: ...


class Log(Protocol):
    """The log `facts_from_log` reads: the application's recorder and the mapper that opens
    its events (`LeadEngine` is one)."""

    @property
    def recorder(self) -> ApplicationRecorder: ...

    @property
    def sealed_mapper(self) -> SealedEvents: ...


def facts_from_log(
    app: Log, page: int = 5000, progress: Callable[[int], None] | None = None
) -> Iterator[FactIn]:
    """Every lead fact in the engine's log, in the order it was recorded; `progress` gets the
    log position read so far (against max_notification_id: a total for percentage and ETA)."""
    keys: dict[Any, str] = {}
    started_topic = _topic(Lead.Started)
    fact_topic = _topic(Lead.FactRecorded)
    position = 0
    while True:
        batch = app.recorder.select_notifications(
            start=position + 1, limit=page, topics=[started_topic, fact_topic]
        )
        if progress:
            progress(position)
        if not batch:
            return
        app.sealed_mapper.prefetch_keys(batch)  # the leads' keys, one round trip
        for notification in batch:
            position = notification.id
            event = app.sealed_mapper.to_domain_event(notification)
            if isinstance(event, Lead.Started):
                keys[event.originator_id] = event.key
                continue
            yield FactIn(
                keys[event.originator_id],
                event.event_id,
                event.event_type,
                event.source,
                event.occurred_at,
                dict(event.data),
            )


def _topic(cls: type) -> str:
    from eventsourcing.utils import get_topic

    return str(get_topic(cls))
