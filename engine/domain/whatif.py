"""What-if: replay every lead's facts under other rules, write nothing, say what would change.

A pure fold over the log: each fact is recorded, in arrival order, on an in-memory `Lead` (the
same code that takes the real decisions), once under the current rules and once under the new
ones (from `since` on; before it the current rules decide). Scores, MQL decisions and stage
moves are replayed; routing is not simulated (it depends on shared queue state, not on a lead).
MQL decisions use each in-memory lead's running score (engine/domain/scorestate.py), so a fact costs
O(1) in scoring; each lead's final score is the full recomputation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.aggregates.lead import Lead
from engine.domain.accounts.profile import AccountProfile
from engine.domain.accounts.whatif import qualifying
from engine.domain.lifecycle import RANK
from engine.domain.rules import Rules

BUCKETS = tuple(range(0, 100, 10))
_NO_ID = UUID(int=0)
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


@dataclass
class WhatIf:
    rules_old: str
    rules_new: str
    since: datetime | None
    facts: int = 0
    leads: int = 0
    old: dict[str, Outcome] = field(default_factory=dict)
    new: dict[str, Outcome] = field(default_factory=dict)
    #: the accounts meeting the MQA rule at the end, under each rules (None: no accounts given)
    mqa_old: list[str] | None = None
    mqa_new: list[str] | None = None

    def summary(self, limit: int = 20) -> dict[str, Any]:
        stages = sorted({o.stage for o in (*self.old.values(), *self.new.values())})
        old_stages = Counter(o.stage for o in self.old.values())
        new_stages = Counter(o.stage for o in self.new.values())
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
                    "old": _bucket_count(self.old.values(), b),
                    "new": _bucket_count(self.new.values(), b),
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


def _bucket_count(outcomes: Iterable[Outcome], b: int) -> int:
    return sum(1 for o in outcomes if _bucket(o.score) == b)


class _Pair:
    __slots__ = ("new", "old")

    def __init__(self, key: str) -> None:
        self.old = Lead.start(key, _NO_ID)  # never stored: any id will do
        self.new = Lead.start(key, _NO_ID)


def replay(
    facts: Iterable[FactIn],
    current: Rules,
    new: Rules,
    *,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    accounts: Sequence[AccountProfile] | None = None,
) -> WhatIf:
    """Fold `facts` (in arrival order) under both rule sets; nothing is written anywhere.
    With `accounts`, also which of them meet the MQA rule under each (accounts/whatif.py)."""
    result = WhatIf(current.ref, new.ref, since)
    leads: dict[str, _Pair] = {}
    for n, fact in enumerate(facts, 1):
        pair = leads.get(fact.lead_key)
        if pair is None:
            pair = leads[fact.lead_key] = _Pair(fact.lead_key)
        rules_new = new if since is None or fact.occurred_at >= since else current
        for lead, rules in ((pair.old, current), (pair.new, rules_new)):
            lead.record(
                event_id=fact.event_id,
                event_type=fact.type,
                source=fact.source,
                occurred_at=fact.occurred_at,
                data=fact.data,
                rules=rules,
            )
            lead.collect_events()  # drop pending events: nothing is saved
        result.facts = n
        if progress and n % 10_000 == 0:
            progress(n)
    result.leads = len(leads)
    for key, pair in leads.items():
        result.old[key] = _outcome(pair.old, current)
        result.new[key] = _outcome(pair.new, new)
    if accounts is not None:
        result.mqa_old = qualifying(accounts, {k: p.old for k, p in leads.items()}, current)
        result.mqa_new = qualifying(accounts, {k: p.new for k, p in leads.items()}, new)
    return result


def _outcome(lead: Lead, rules: Rules) -> Outcome:
    reached = any(RANK.get(stage, -1) >= RANK["mql"] for stage in lead.reached)
    total = lead.current_score(rules, explain=False).total
    return Outcome(lead.stage, lead.mql_rounds > 0, total, reached)


def facts_from_log(
    app: Any, page: int = 5000, progress: Callable[[int], None] | None = None
) -> Iterator[FactIn]:
    """Every lead fact in the engine's log, in the order it was recorded; `progress` gets the
    log position read so far (against max_notification_id: a total for percentage and ETA)."""
    keys: dict[Any, str] = {}
    started_topic = _topic(app, Lead.Started)
    fact_topic = _topic(app, Lead.FactRecorded)
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


def _topic(app: Any, cls: type) -> str:
    from eventsourcing.utils import get_topic

    return str(get_topic(cls))
