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

The decisions a fact calls for are taken by the step function `LeadFold.record_fact`
(engine/domain/fold.py), shared with the lean fold `whatif` and as-of replay use: here each
decision goes out as a stored event whose `apply` calls the same mutation.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from engine.domain import moments
from engine.domain.fold import LeadFold
from engine.domain.leadids import (  # the namespace of the other aggregates' ids
    NAMESPACE as NAMESPACE,
)
from engine.domain.leadids import pseudonym
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scoring import Score


class Recorded(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # personal data for a forgotten lead, with rules privacy.after_erasure drop
    CONFLICT = "conflict"  # a stored event's (source, id) with other content: refused, kept


class Lead(Aggregate, LeadFold):
    """One lead (a person, not a row): created by the first event that names it."""

    class Started(Aggregate.Created):
        """`key` is personal data (often an email address): the store keeps it sealed with
        the lead's own key (engine/postgres/sealing.py), so `forget` makes it unreadable."""

        SEALED_FIELDS = ("key",)
        key: str

    def __init__(self, key: str) -> None:
        self._init_fold(key)  # the decision state (engine/domain/fold.py)
        self.queue: str | None = None  # the queue of the latest routing
        self.routings: list[tuple[datetime, str, str]] = []  # (when, owner, queue), every round
        self.routed: list[Lead.Routed] = []  # every routing, as decided (lead_sla_rounds)
        self.routing_failure: str | None = None  # why the latest routing attempt found nobody
        self.sla_alerts: set[tuple[datetime, str, str]] = set()  # (routed_at, timer, status)
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
        return Recorded(
            self.record_fact(event_id, event_type, source, occurred_at, data, rules, extra)
        )

    def current_score(
        self, rules: ScoringModel, as_of: datetime | None = None, *, explain: bool = True
    ) -> Score:
        """Score under `rules` as of `as_of` (default: when the lead's latest fact happened);
        without `explain`, the totals only (`scoring.score`)."""
        return self.score_at(rules, as_of or self.clock or self.created_on, explain=explain)

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
        subject_wins: bool = False,
    ) -> None:
        """Record the identity decision an accepted identity fact calls for (engine/stitching):
        this key and the lead `other_id` are one person (`linked`, `merged`) or no longer
        (`unmerged`). Ids only: the other key itself stays in the sealed fact. `subject_wins`:
        this key is the merge's winner, `other_id` the loser (an engine merge recorded on the
        older key's stream when it arrived after the younger one)."""
        more = {"subject_wins": True} if subject_wins else {}
        self.trigger_event(
            self.Linked,
            relation=relation,
            other_id=other_id,
            event_id=event_id,
            source=source,
            by=by,
            reason=reason,
            occurred_at=at,
            **more,
        )

    def dismiss_duplicate(
        self, *, other_id: UUID, rule: str, by: str, reason: str, at: datetime
    ) -> None:
        """Record that someone dismissed the duplicate suggestion of this lead and the older lead
        `other_id` (`leadengine duplicates dismiss`): the rule does not suggest the pair again.
        Ids only."""
        self.trigger_event(
            self.DuplicateDismissed,
            other_id=other_id,
            rule=rule,
            by=by,
            reason=reason,
            occurred_at=at,
        )

    # -- decisions out: stored events (engine/domain/fold.py takes them) ----------------------

    def _emit_fact(
        self,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        extra: dict[str, Any] | None,
    ) -> None:
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

    def _emit_anomaly(self, event_id: str, event_type: str, reason: str) -> None:
        self.trigger_event(
            self.AnomalyFlagged, event_id=event_id, event_type=event_type, reason=reason
        )

    def _emit_retracted(
        self, version_retracted: int, to_stage: str, reason: str, trigger: str
    ) -> None:
        self.trigger_event(
            self.StageRetracted,
            version_retracted=version_retracted,
            to_stage=to_stage,
            reason=reason,
            trigger_event_id=trigger,
        )

    def _emit_stage(
        self, from_stage: str, to_stage: str, reason: str, trigger: str, at: datetime
    ) -> None:
        self.trigger_event(
            self.StageChanged,
            from_stage=from_stage,
            to_stage=to_stage,
            reason=reason,
            trigger_event_id=trigger,
            occurred_at=at,
        )

    def _emit_qualified(
        self,
        from_stage: str,
        rules_version: str,
        total: float,
        fit: float,
        engagement: float,
        trigger: str,
        at: datetime,
    ) -> None:
        self.trigger_event(
            self.MarketingQualified,
            from_stage=from_stage,
            rules_version=rules_version,
            score=total,
            fit=fit,
            engagement=engagement,
            trigger_event_id=trigger,
            occurred_at=at,
        )

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
            aggregate._apply_fact(
                self.event_id,
                self.event_type,
                self.source,
                self.occurred_at,
                self.data,
                getattr(self, "extra", None),
            )

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
            aggregate._apply_stage(self.originator_version, step)

    class StageRetracted(Aggregate.Event):
        """A move (the event at `version_retracted`) the facts, walked in event time, no longer
        make: a late fact (`trigger_event_id`) happened before it and changed the path."""

        version_retracted: int
        to_stage: str
        reason: str
        trigger_event_id: str

        def apply(self, aggregate: Lead) -> None:
            aggregate._apply_retracted(self.version_retracted)

    class MarketingQualified(Aggregate.Event):
        from_stage: str
        rules_version: str
        score: float
        fit: float
        engagement: float
        trigger_event_id: str
        occurred_at: datetime

        def apply(self, aggregate: Lead) -> None:
            aggregate._apply_qualified(
                self.originator_version, self.from_stage, self.trigger_event_id, self.occurred_at
            )

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
            aggregate._apply_erased(self.occurred_at, pseudonym(aggregate.id))

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
        #: the subject won (the other lead is the duplicate); absent (False) on all others
        subject_wins: bool = False

        def apply(self, aggregate: Lead) -> None:
            aggregate.links.append(self)

    class DuplicateDismissed(Aggregate.Event):
        """A duplicate suggestion (this lead the younger, `other_id` the older) was dismissed:
        two people; `rule` names the rules that had suggested it (docs/identity.md#duplicates)."""

        other_id: UUID
        rule: str
        by: str
        reason: str
        occurred_at: datetime

    class AnomalyFlagged(Aggregate.Event):
        event_id: str
        event_type: str
        reason: str

        def apply(self, aggregate: Lead) -> None:
            aggregate.anomalies += 1
