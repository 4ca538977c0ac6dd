"""The lead's decision step, shared by the Lead aggregate and the lean fold.

`LeadFold` holds what a lead's decisions read (its facts, the event-time walk, the path, the
running scores) and takes them: `record` is the one step function for a fact (lifecycle moves,
retractions, anomalies, the MQL decision). Each decision goes out through an `_emit_*` hook and
comes back in through the matching `_apply_*` mutation:

- the Lead aggregate (engine/aggregates/lead.py) emits eventsourcing events (stored, then
  folded by their `apply`, which calls the same `_apply_*`);
- `LeanLead` applies at once, with no event object: the fold `whatif` and as-of replay use,
  a few times faster per fact, deciding exactly as the aggregate does (one code path; proven by
  tests/property/test_lean_fold.py).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from engine.domain import identity, lifecycle, moments
from engine.domain.facts import ERASED_KEY, Fact, email_domain, strip_pii
from engine.domain.rules import Rules, ScoringModel
from engine.domain.scorestate import ScoreState, decide_mql
from engine.domain.scoring import Score, score

#: the moment a lead with no dated fact is scored at (`LeanLead` has no creation time)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ACCEPTED, DUPLICATE, IGNORED = "accepted", "duplicate", "ignored"


class LeadFold:
    """A lead's decision state and its step function (see the module docstring)."""

    key: str
    stage: str
    owner: str | None
    facts: list[Fact]
    seen: dict[identity.EventKey, int]
    reached: dict[str, datetime]
    path: list[tuple[int, moments.Step]]
    qualified: list[moments.Qualification]
    walked: moments.WalkState
    clock: datetime | None
    anomalies: int
    mql_rounds: int
    owner_source: str | None
    routing_open: bool
    erased_at: datetime | None
    running: dict[int, ScoreState]
    #: decisions record the full recomputation's values (else the running ones: `decide_mql`)
    exact_decisions = True

    def _init_fold(self, key: str) -> None:
        self.key = key  # `pseudonym(id)` once forgotten, or where the key cannot be opened
        self.stage = "anonymous"
        self.owner = None
        self.facts = []
        self.seen = {}  # (source, id) -> index in facts
        self.reached = {}  # first moment of each stage, in event time
        self.path = []  # (version of its event, step), in time
        self.qualified = []  # every MQL decision, as taken
        self.walked = moments.WalkState()  # the facts and decisions walked in event time
        self.clock = None
        self.anomalies = 0
        self.mql_rounds = 0
        self.owner_source = None  # "manual" (upstream owner.assigned) or "routing"
        self.routing_open = False  # routed and still counted in its rep's load
        self.erased_at = None  # `forget`: personal data shredded then
        self.running = {}  # id(model) -> running score (not an event)

    # -- the step ---------------------------------------------------------------------------

    def record_fact(
        self,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        rules: Rules,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Record one upstream fact, then take the decisions it calls for; returns `ACCEPTED`,
        `DUPLICATE` or `IGNORED`. Raises `EventConflict` when (source, event_id) is recorded
        with other content."""
        known = identity.lookup(self.seen, source, event_id)
        if known is not None:
            self.check_redelivery(self.facts[known], event_type, occurred_at, data, extra)
            return DUPLICATE
        if self.erased_at is not None:
            stripped = strip_pii(event_type, data)
            if (stripped != data or extra) and rules.privacy.after_erasure == "drop":
                return IGNORED
            data, extra = stripped, None  # kept unknown fields are personal data too
        self._emit_fact(event_id, event_type, source, occurred_at, data, extra or None)
        anomaly = self._restage(event_id)
        if anomaly is not None:
            self._emit_anomaly(event_id, event_type, anomaly)
        if lifecycle.can_trigger_mql(event_type) and self._qualify(rules, event_id, occurred_at):
            self._restage(event_id)
        return ACCEPTED

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

    def score_at(self, rules: ScoringModel, as_of: datetime, *, explain: bool = True) -> Score:
        return score(self.facts, rules, as_of, explain=explain)

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
                self._emit_retracted(
                    version,
                    step.to_stage,
                    f"{trigger} happened earlier: walked in event time, the lead no "
                    f"longer moved to {step.to_stage} at {step.at.isoformat()}",
                    trigger,
                )
        kept = {step.identity for _version, step in self.path}
        for step in steps:
            if step.identity not in kept:
                self._emit_stage(step.from_stage, step.to_stage, step.reason, step.trigger, step.at)
        return walked.anomaly(trigger)

    def _qualify(self, rules: Rules, trigger: str, at: datetime) -> bool:
        """Take the MQL decision if the lead is qualifiable (now, and on the walk at the
        trigger's moment: a late trigger that fell where the lead was past mql moves nothing)
        and its score meets the rule; dated at the trigger's event time. Returns whether it
        was taken."""
        if self.stage not in lifecycle.QUALIFIABLE or self.clock is None:
            return False
        result = self._decide(rules)
        return result is not None and self._take(rules, result, trigger, at)

    def _decide(self, rules: Rules) -> Score | None:
        """The score if the MQL rule is met at the lead's clock (`decide_mql`), else None."""
        assert self.clock is not None
        running = self._running(rules)
        return decide_mql(running, self.facts, self.clock, rules, exact=self.exact_decisions)

    def _take(self, rules: Rules, result: Score, trigger: str, at: datetime) -> bool:
        """Record the MQL decision `result` unless the walk has the lead past mql there."""
        if not self.walked.would_qualify(moments.Qualification(trigger, at)):
            return False
        self._emit_qualified(
            self.stage, rules.ref, result.total, result.fit, result.engagement, trigger, at
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

    # -- decisions out (stored events, or applied at once) ---------------------------------

    def _emit_fact(
        self,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        extra: dict[str, Any] | None,
    ) -> None:
        raise NotImplementedError

    def _emit_anomaly(self, event_id: str, event_type: str, reason: str) -> None:
        raise NotImplementedError

    def _emit_retracted(
        self, version_retracted: int, to_stage: str, reason: str, trigger: str
    ) -> None:
        raise NotImplementedError

    def _emit_stage(
        self, from_stage: str, to_stage: str, reason: str, trigger: str, at: datetime
    ) -> None:
        raise NotImplementedError

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
        raise NotImplementedError

    # -- decisions in (what each event does to the state) ----------------------------------

    def _apply_fact(
        self,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        extra: dict[str, Any] | None,
    ) -> None:
        facts = self.facts
        fact = Fact(event_id, event_type, source, occurred_at, data, len(facts), extra)
        self.seen[(source, event_id)] = len(facts)
        facts.append(fact)
        self.walked.add_fact(fact)
        if event_type in lifecycle.IDENTITY_FACTS:
            return  # who the lead is, not what it did: the lead's clock stays
        if self.clock is None or occurred_at > self.clock:
            self.clock = occurred_at
        if event_type == "owner.assigned":
            self.owner = str(data["owner"])
            self.owner_source = "manual"
            self.routing_open = False

    def _apply_stage(self, version: int, step: moments.Step) -> None:
        self._place(version, step)
        if step.to_stage in lifecycle.RELEASES_OWNER:
            self.routing_open = False

    def _apply_retracted(self, version_retracted: int) -> None:
        self.path = [(v, s) for v, s in self.path if v != version_retracted]
        self._read_path()

    def _apply_qualified(self, version: int, from_stage: str, trigger: str, at: datetime) -> None:
        self.mql_rounds += 1
        decision = moments.Qualification(trigger, at)
        self.qualified.append(decision)
        self.walked.add_decision(decision)
        self.walked.changed = True  # the path gained a move: bring it to the walk
        step = moments.Step(at, from_stage, "mql", "marketing qualified", trigger)
        self._place(version, step)

    def _apply_erased(self, at: datetime, key: str) -> None:
        self.erased_at = at
        self.running.clear()  # the facts are replaced: running scores start over
        self.key = key
        self.facts = [
            Fact(f.event_id, f.type, f.source, f.occurred_at, strip_pii(f.type, f.data), f.seq)
            for f in self.facts
        ]
        self.walked = moments.WalkState.of(self.facts, self.qualified)

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


class LeanLead(LeadFold):
    """A lead folded without eventsourcing: each decision is applied as it is taken, no event
    object built, nothing to store. Versions count as the aggregate's would (its start is 1),
    so the path reads the same. With `log`, every decision is also kept as (kind, fields)."""

    def __init__(
        self,
        key: str,
        *,
        log: bool = False,
        running: dict[int, ScoreState] | None = None,
        alike: dict[int, ScoringModel] | None = None,
    ) -> None:
        self._init_fold(key)
        self.version = 1
        self.log: list[tuple[str, dict[str, Any]]] | None = [] if log else None
        if running is not None:
            self.running = running
        self.alike = alike or {}

    def _running(self, model: ScoringModel) -> ScoreState:
        """As `LeadFold._running`, and: leads given one `running` share their running scores
        (they must record the same facts: what-if's pair does), and a model in `alike` uses the
        running score of the model it maps to (one that scores alike: `same_scoring`)."""
        return super()._running(self.alike.get(id(model), model))

    def fork(self) -> LeanLead:
        """A lead in this one's state that goes on on its own (decision log included). The
        running scores stay shared: both must record the same facts from here on."""
        twin = copy.copy(self)
        twin.facts, twin.seen = list(self.facts), dict(self.seen)
        twin.reached, twin.path = dict(self.reached), list(self.path)
        twin.qualified, twin.walked = list(self.qualified), self.walked.copy()
        twin.log = None if self.log is None else list(self.log)
        return twin

    def current_score(
        self, rules: ScoringModel, as_of: datetime | None = None, *, explain: bool = True
    ) -> Score:
        """As `Lead.current_score`; a lead with no dated fact is scored at `EPOCH`."""
        return self.score_at(rules, as_of or self.clock or EPOCH, explain=explain)

    def erase(self, *, at: datetime, key: str) -> None:
        self.version += 1
        self._apply_erased(at, key)
        if self.log is not None:
            self.log.append(("Erased", {"occurred_at": at}))

    def _emit_fact(
        self,
        event_id: str,
        event_type: str,
        source: str,
        occurred_at: datetime,
        data: dict[str, Any],
        extra: dict[str, Any] | None,
    ) -> None:
        self.version += 1
        self._apply_fact(event_id, event_type, source, occurred_at, data, extra)
        if self.log is not None:
            fields: dict[str, Any] = {"event_id": event_id, "event_type": event_type}
            fields.update(source=source)
            fields.update(occurred_at=occurred_at, data=data, extra=extra)
            self.log.append(("FactRecorded", fields))

    def _emit_anomaly(self, event_id: str, event_type: str, reason: str) -> None:
        self.version += 1
        self.anomalies += 1
        if self.log is not None:
            fields = {"event_id": event_id, "event_type": event_type, "reason": reason}
            self.log.append(("AnomalyFlagged", fields))

    def _emit_retracted(
        self, version_retracted: int, to_stage: str, reason: str, trigger: str
    ) -> None:
        self.version += 1
        self._apply_retracted(version_retracted)
        if self.log is not None:
            fields: dict[str, Any] = {"version_retracted": version_retracted}
            fields.update(to_stage=to_stage)
            fields.update(reason=reason, trigger_event_id=trigger)
            self.log.append(("StageRetracted", fields))

    def _emit_stage(
        self, from_stage: str, to_stage: str, reason: str, trigger: str, at: datetime
    ) -> None:
        self.version += 1
        self._apply_stage(self.version, moments.Step(at, from_stage, to_stage, reason, trigger))
        if self.log is not None:
            fields: dict[str, Any] = {"from_stage": from_stage, "to_stage": to_stage}
            fields.update(reason=reason)
            fields.update(trigger_event_id=trigger, occurred_at=at)
            self.log.append(("StageChanged", fields))

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
        self.version += 1
        self._apply_qualified(self.version, from_stage, trigger, at)
        if self.log is not None:
            fields: dict[str, Any] = {"from_stage": from_stage, "rules_version": rules_version}
            fields.update(score=total, fit=fit, engagement=engagement)
            fields.update(trigger_event_id=trigger, occurred_at=at)
            self.log.append(("MarketingQualified", fields))


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
