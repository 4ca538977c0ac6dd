"""The Lead aggregate: every fact about one person, and the decisions the engine took on them.

Facts (`FactRecorded`) are what upstream systems saw. Decisions are the engine's own:
`StageChanged` (a fact moved the lead), `StageRetracted` (a late fact, walked in event time,
took a move back: engine/domain/moments.py), `MarketingQualified` (the score crossed the MQL rule,
with the rules version, the score and the trigger event, dated at the trigger's event time),
`AnomalyFlagged` (a fact that made no sense in the stage it found; kept, stage untouched),
`Routed` / `RoutingFailed` (who got the lead, from which queue, by which strategy, and why),
`SlaAlerted` (a turnaround timer passed its at-risk or due moment untouched:
engine/services/timers.py).
A fact is known by its CloudEvent (`source`, `id`): the same again is a no-op, the same pair
with other content a conflict.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from engine.domain import identity, lifecycle, moments
from engine.domain.facts import ERASED_KEY, Fact, email_domain, strip_pii
from engine.domain.leadids import (  # the namespace of the other aggregates' ids
    NAMESPACE as NAMESPACE,
)
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scorestate import ScoreState, decide_mql
from engine.domain.scoring import Score, score


class Recorded(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # personal data for a forgotten lead, with rules privacy.after_erasure drop
    CONFLICT = "conflict"  # a stored event's (source, id) with other content: refused, kept


class Lead(Aggregate):
    """One lead (a person, not a row): created by the first event that names it."""

    class Started(Aggregate.Created):
        """`key` is personal data (often an email address): the store keeps it sealed with
        the lead's own key (engine/postgres/sealing.py), so `forget` makes it unreadable."""

        SEALED_FIELDS = ("key",)
        key: str

    def __init__(self, key: str) -> None:
        self.key = key  # `pseudonym(id)` once forgotten, or where the key cannot be opened
        self.stage = "anonymous"
        self.owner: str | None = None
        self.facts: list[Fact] = []
        self.seen: dict[identity.EventKey, int] = {}  # (source, id) -> index in facts
        self.reached: dict[str, datetime] = {}  # first moment of each stage, in event time
        self.path: list[tuple[int, moments.Step]] = []  # (version of its event, step), in time
        self.qualified: list[moments.Qualification] = []  # every MQL decision, as taken
        self.walked = moments.WalkState()  # the facts and decisions walked in event time
        self.clock: datetime | None = None
        self.anomalies = 0
        self.mql_rounds = 0
        self.owner_source: str | None = None  # "manual" (upstream owner.assigned) or "routing"
        self.queue: str | None = None  # the queue of the latest routing
        self.routing_open = False  # routed and still counted in its rep's load
        self.routings: list[tuple[datetime, str, str]] = []  # (when, owner, queue), every round
        self.routed: list[Lead.Routed] = []  # every routing, as decided (lead_sla_rounds)
        self.routing_failure: str | None = None  # why the latest routing attempt found nobody
        self.erased_at: datetime | None = None  # `forget`: personal data shredded then
        self.sla_alerts: set[tuple[datetime, str, str]] = set()  # (routed_at, timer, status)
        self.running: dict[int, ScoreState] = {}  # id(model) -> running score (not an event)
        self.links: list[Lead.Linked] = []  # identity decisions recorded on this key

    @classmethod
    def start(cls, key: str, lead_id: UUID) -> Lead:
        """A new lead; its id comes from the application's lead id function (a keyed hash of
        `key`, see engine/domain/leadids.py), never from the key alone."""
        return cls._create(cls.Started, id=lead_id, key=key)

    # -- commands ---------------------------------------------------------------------------

    def record(
        self,
        *,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        rules: Rules,
        extra: dict[str, Any] | None = None,
    ) -> Recorded:
        """Record one upstream fact, then take the decisions it calls for.

        `extra` (the contract's kept unknown fields) is stored with the fact, never decided on.
        Raises `EventConflict` when (source, event_id) is recorded with other content."""
        known = identity.lookup(self.seen, source, event_id)
        if known is not None:
            self.check_redelivery(self.facts[known], event_type, occurred_at, data, extra)
            return Recorded.DUPLICATE
        if self.erased_at is not None:
            stripped = strip_pii(event_type, data)
            if (stripped != data or extra) and rules.privacy.after_erasure == "drop":
                return Recorded.IGNORED
            data, extra = stripped, None  # kept unknown fields are personal data too
        kept = {"extra": extra} if extra else {}  # a fact without any stores as before
        self.trigger_event(
            self.FactRecorded,
            event_id=event_id,
            event_type=event_type,
            source=source,
            occurred_at=occurred_at,
            data=data,
            **kept,
        )
        anomaly = self._restage(event_id)
        if anomaly is not None:
            self.trigger_event(
                self.AnomalyFlagged,
                event_id=event_id,
                event_type=event_type,
                reason=anomaly,
            )
        if lifecycle.can_trigger_mql(event_type) and self._qualify(rules, event_id, occurred_at):
            self._restage(event_id)
        return Recorded.ACCEPTED

    def check_redelivery(
        self,
        stored: Fact,
        event_type: str,
        occurred_at: datetime,
        data: dict[str, Any],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Raise `EventConflict` unless the new event is `stored` again.

        Once the lead is forgotten its stored facts hold no personal fields, so both sides are
        compared without them: a redelivered old event stays a duplicate, and nothing personal
        (not even a digest of it) had to be kept to tell. Kept unknown `data` fields count as
        content; kept extension attributes do not (transport metadata, e.g. a trace id)."""
        erased = self.erased_at is not None or ERASED_KEY in stored.data
        old = identity.content(
            stored.type, stored.occurred_at, _comparable(stored, erased), **_kept(stored, erased)
        )
        new = Fact(stored.event_id, event_type, stored.source, occurred_at, data, extra=extra)
        identity.check_same(
            old,
            identity.content(
                event_type, occurred_at, _comparable(new, erased), **_kept(new, erased)
            ),
            source=stored.source,
            event_id=stored.event_id,
        )

    def current_score(
        self, rules: ScoringModel, as_of: datetime | None = None, *, explain: bool = True
    ) -> Score:
        """Score under `rules` as of `as_of` (default: when the lead's latest fact happened);
        without `explain`, the totals only (`scoring.score`)."""
        return score(self.facts, rules, as_of or self.clock or self.created_on, explain=explain)

    def needs_routing(self, rules: Rules) -> bool:
        """In the routing stage with nobody working it (a manual owner always wins)."""
        if rules.routing is None or self.stage != rules.routing.on_stage:
            return False
        return not self.routing_open and self.owner_source != "manual"

    def route(
        self, *, owner: str, queue: str, strategy: str, why: str, trigger: str, at: datetime
    ) -> None:
        self.trigger_event(
            self.Routed,
            owner=owner,
            queue=queue,
            strategy=strategy,
            why=why,
            trigger_event_id=trigger,
            occurred_at=at,
        )

    def routing_failed(self, *, queue: str | None, reason: str, trigger: str, at: datetime) -> None:
        """Record why nobody got the lead, unless the last attempt failed for the same reason."""
        if reason == self.routing_failure:
            return
        self.trigger_event(
            self.RoutingFailed, queue=queue, reason=reason, trigger_event_id=trigger, occurred_at=at
        )

    def alert_sla(
        self,
        *,
        timer: str,
        status: str,
        at: datetime,
        due: datetime,
        routed_at: datetime,
        owner: str,
        queue: str,
    ) -> bool:
        """Record that an SLA timer passed its at-risk or due moment `at` with nothing done,
        unless recorded already for that routing round; returns whether it was recorded."""
        if (routed_at, timer, status) in self.sla_alerts:
            return False
        self.trigger_event(
            self.SlaAlerted,
            timer=timer,
            status=status,
            at=at,
            due=due,
            routed_at=routed_at,
            owner=owner,
            queue=queue,
        )
        return True

    def erase(self, *, reason: str, by: str, at: datetime) -> None:
        """Record that the person's data was forgotten (who, when, why; nothing personal)."""
        self.trigger_event(self.Erased, reason=reason, by=by, occurred_at=at)

    def link(
        self,
        *,
        relation: str,
        other_id: UUID,
        event_id: str,
        source: str,
        by: str | None,
        reason: str | None,
        at: datetime,
    ) -> None:
        """Record the identity decision an accepted identity fact calls for (engine/stitching):
        this key and the lead `other_id` are one person (`linked`, `merged`) or no longer
        (`unmerged`). Ids only: the other key itself stays in the sealed fact."""
        self.trigger_event(
            self.Linked,
            relation=relation,
            other_id=other_id,
            event_id=event_id,
            source=source,
            by=by,
            reason=reason,
            occurred_at=at,
        )

    def _restage(self, trigger: str) -> str | None:
        """Walk the facts in event time (engine/domain/moments.py) and bring the path to the walk:
        retract the moves it no longer makes, then record the ones it makes anew (in time
        order). Facts arriving in order only ever add a move at the end; a late one may move
        earlier moments. Returns why the `trigger` fact made no sense where it fell, if so.
        The walk is kept as facts arrive (`moments.WalkState`): while its moves stay as they
        were when the path was last brought to it, there is nothing to bring."""
        walked = self.walked
        if not walked.changed:
            return walked.anomaly(trigger)
        walked.changed = False
        steps = walked.steps
        wanted = {step.identity for step in steps}
        for version, step in list(self.path):
            if step.identity not in wanted:
                self.trigger_event(
                    self.StageRetracted,
                    version_retracted=version,
                    to_stage=step.to_stage,
                    reason=f"{trigger} happened earlier: walked in event time, the lead no "
                    f"longer moved to {step.to_stage} at {step.at.isoformat()}",
                    trigger_event_id=trigger,
                )
        kept = {step.identity for _version, step in self.path}
        for step in steps:
            if step.identity not in kept:
                self.trigger_event(
                    self.StageChanged,
                    from_stage=step.from_stage,
                    to_stage=step.to_stage,
                    reason=step.reason,
                    trigger_event_id=step.trigger,
                    occurred_at=step.at,
                )
        return walked.anomaly(trigger)

    def _qualify(self, rules: Rules, trigger: str, at: datetime) -> bool:
        """Take the MQL decision if the lead is qualifiable (now, and on the walk at the
        trigger's moment: a late trigger that fell where the lead was past mql moves nothing)
        and its score meets the rule; dated at the trigger's event time. Returns whether it
        was taken."""
        if self.stage not in lifecycle.QUALIFIABLE or self.clock is None:
            return False
        result = decide_mql(self._running(rules), self.facts, self.clock)
        if result is None:
            return False
        if not self.walked.would_qualify(moments.Qualification(trigger, at)):
            return False
        self.trigger_event(
            self.MarketingQualified,
            from_stage=self.stage,
            rules_version=rules.ref,
            score=result.total,
            fit=result.fit,
            engagement=result.engagement,
            trigger_event_id=trigger,
            occurred_at=at,
        )
        return True

    def _running(self, model: ScoringModel) -> ScoreState:
        """The lead's running score under `model` (engine/domain/scorestate.py), built from the
        facts the first time; a few models at most (what-if alternates two), else start over."""
        state = self.running.get(id(model))
        if state is None or state.model is not model:
            if len(self.running) >= 4:
                self.running.clear()
            state = self.running[id(model)] = ScoreState(model)
        return state

    def _place(self, version: int, step: moments.Step) -> None:
        self.path.append((version, step))
        self._read_path()

    def _read_path(self) -> None:
        """Order the path as the walk makes it (engine/domain/moments.py), then read the stage (the
        path's last move) and each stage's first moment off it."""
        firsts = self.walked.firsts
        self.path.sort(key=lambda vs: (moments.step_order(vs[1], firsts), vs[0]))
        self.stage = self.path[-1][1].to_stage if self.path else "anonymous"
        self.reached = {}
        for _version, step in self.path:
            first = self.reached.get(step.to_stage)
            if first is None or step.at < first:
                self.reached[step.to_stage] = step.at

    # -- events -----------------------------------------------------------------------------

    class FactRecorded(Aggregate.Event):
        event_id: str
        event_type: str
        source: str
        occurred_at: datetime
        data: dict[str, Any]
        #: kept unknown fields (`Envelope.kept`); absent from facts that had none
        extra: dict[str, Any] | None = None

        def apply(self, aggregate: Lead) -> None:
            fact = Fact(
                self.event_id,
                self.event_type,
                self.source,
                self.occurred_at,
                self.data,
                seq=len(aggregate.facts),
                extra=getattr(self, "extra", None),
            )
            aggregate.seen[(self.source, self.event_id)] = len(aggregate.facts)
            aggregate.facts.append(fact)
            aggregate.walked.add_fact(fact)
            if self.event_type in lifecycle.IDENTITY_FACTS:
                return  # who the lead is, not what it did: the lead's clock stays
            if aggregate.clock is None or self.occurred_at > aggregate.clock:
                aggregate.clock = self.occurred_at
            if self.event_type == "owner.assigned":
                aggregate.owner = str(self.data["owner"])
                aggregate.owner_source = "manual"
                aggregate.routing_open = False

    class StageChanged(Aggregate.Event):
        from_stage: str
        to_stage: str
        reason: str
        trigger_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            step = moments.Step(
                self.occurred_at, self.from_stage, self.to_stage, self.reason, self.trigger_event_id
            )
            aggregate._place(self.originator_version, step)
            if self.to_stage in lifecycle.RELEASES_OWNER:
                aggregate.routing_open = False

    class StageRetracted(Aggregate.Event):
        """A move (the event at `version_retracted`) the facts, walked in event time, no longer
        make: a late fact (`trigger_event_id`) happened before it and changed the path."""

        version_retracted: int
        to_stage: str
        reason: str
        trigger_event_id: str

        def apply(self, aggregate: Lead) -> None:
            aggregate.path = [(v, s) for v, s in aggregate.path if v != self.version_retracted]
            aggregate._read_path()

    class MarketingQualified(Aggregate.Event):
        from_stage: str
        rules_version: str
        score: float
        fit: float
        engagement: float
        trigger_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate.mql_rounds += 1
            decision = moments.Qualification(self.trigger_event_id, self.occurred_at)
            aggregate.qualified.append(decision)
            aggregate.walked.add_decision(decision)
            aggregate.walked.changed = True  # the path gained a move: bring it to the walk
            step = moments.Step(
                self.occurred_at, self.from_stage, "mql", "marketing qualified",
                self.trigger_event_id,
            )  # fmt: skip
            aggregate._place(self.originator_version, step)

    class Routed(Aggregate.Event):
        """The engine gave the lead to `owner` from `queue`; `why` says how it chose."""

        owner: str
        queue: str
        strategy: str
        why: str
        trigger_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate.owner = self.owner
            aggregate.owner_source = "routing"
            aggregate.queue = self.queue
            aggregate.routing_open = True
            aggregate.routing_failure = None
            aggregate.routings.append((self.occurred_at, self.owner, self.queue))
            aggregate.routed.append(self)

    class RoutingFailed(Aggregate.Event):
        """No rep could take the lead (none available or all at capacity, or no queue matched)."""

        queue: str | None
        reason: str
        trigger_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate.queue = self.queue
            aggregate.routing_failure = self.reason

    class Erased(Aggregate.Event):
        """The lead's key was shredded: its personal data is gone, its history stays.

        `reason` and `by` are the operator's words; they must not name the person."""

        reason: str
        by: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate.erased_at = self.occurred_at
            aggregate.running.clear()  # the facts are replaced: running scores start over
            aggregate.key = pseudonym(aggregate.id)
            aggregate.facts = [
                Fact(f.event_id, f.type, f.source, f.occurred_at, strip_pii(f.type, f.data), f.seq)
                for f in aggregate.facts
            ]
            aggregate.walked = moments.WalkState.of(aggregate.facts, aggregate.qualified)

    class SlaAlerted(Aggregate.Event):
        """An SLA timer (`first_touch` or `decision`) of the routing at `routed_at` reached its
        at-risk or due moment `at` with nothing done: recorded by the timer service
        (engine/services/timers.py) as that moment passed, so a replay shows when the engine
        warned."""

        timer: str
        status: str  # at_risk | breached
        at: datetime
        due: datetime
        routed_at: datetime
        owner: str
        queue: str

        def apply(self, aggregate: Lead) -> None:
            aggregate.sla_alerts.add((self.routed_at, self.timer, self.status))

    class Linked(Aggregate.Event):
        """An identity decision: the fact (`source`, `event_id`) said this key and the lead
        `other_id` are one person (`relation` linked or merged) or two again (`unmerged`). The
        facts stay where they are; the identity map folds these (engine/stitching)."""

        relation: str  # linked | merged | unmerged
        other_id: UUID
        event_id: str
        source: str
        by: str | None
        reason: str | None
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate.links.append(self)

    class AnomalyFlagged(Aggregate.Event):
        event_id: str
        event_type: str
        reason: str

        def apply(self, aggregate: Lead) -> None:
            aggregate.anomalies += 1


def _kept(fact: Fact, erased: bool) -> dict[str, Any]:
    """A fact's kept unknown `data` fields as compared for identity (none once erased)."""
    if erased or not fact.extra:
        return {}
    return {f"extra.data.{k}": v for k, v in fact.extra.get("data", {}).items()}


def _comparable(fact: Fact, erased: bool) -> dict[str, Any]:
    """A fact's payload as compared for identity: personal fields dropped once erased, and
    `email_domain` derived as the store derives it (a reloaded fact holds it, a new one not)."""
    if erased:
        return strip_pii(fact.type, fact.data)
    data = dict(fact.data)
    if isinstance(data.get("email"), str) and data.get("email_domain") is None:
        data["email_domain"] = email_domain(data["email"])
    return data
