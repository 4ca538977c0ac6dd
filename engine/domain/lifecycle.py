"""The lead lifecycle: which stage a fact moves a lead to, as a pure function.

Funnel: anonymous -> lead -> mql -> sal -> sql -> opportunity -> customer. Exits and re-entries:
nurture, recycled, disqualified, lost. Forward skips are allowed (real CRMs skip stages); moves
back are history with a reason. A fact that makes no sense in the current stage is an anomaly:
kept, flagged with a reason, and the stage is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FUNNEL = ("anonymous", "lead", "mql", "sal", "sql", "opportunity", "customer")
EXITS = ("nurture", "recycled", "disqualified", "lost")
STAGES = FUNNEL + EXITS
RANK = {stage: i for i, stage in enumerate(FUNNEL)}
#: Stages from which a lead may become MQL by score.
QUALIFIABLE = frozenset({"lead", "nurture", "recycled"})

#: Stages in which a routed lead no longer counts in its rep's load (rejected, parked, closed).
RELEASES_OWNER = frozenset({"recycled", "nurture", "disqualified", "lost", "customer"})

#: Facts about the lead's own profile and behaviour; only these can trigger an MQL decision,
#: so a sales hand-off (e.g. a rejection) never re-qualifies a lead by itself.
SCORING_FACTS = frozenset({"lead.captured", "lead.profile_updated"})


#: Facts about who the lead is (engine/stitching), not what it did: they move no stage, no
#: clock and no score, so a merge later undone leaves every derived value as it was.
IDENTITY_FACTS = frozenset({"identity.linked", "lead.merged", "lead.unmerged"})


def can_trigger_mql(event_type: str) -> bool:
    return event_type.startswith("touch.") or event_type in SCORING_FACTS


#: Upstream facts that push a lead forward to a funnel stage.
FORWARD = {
    "lead.captured": "lead",
    "sales.accepted": "sal",
    "sales.qualified": "sql",
    "opportunity.opened": "opportunity",
    "deal.won": "customer",
}


@dataclass(frozen=True, slots=True)
class Move:
    to: str
    reason: str


@dataclass(frozen=True, slots=True)
class Anomaly:
    reason: str


Outcome = Move | Anomaly | None


def _forward(stage: str, target: str, event_type: str) -> Outcome:
    if stage == target:
        if event_type == "lead.captured":
            return None  # a second capture (e.g. another form) is not an anomaly
        return Anomaly(f"{event_type} while already {stage}")
    if stage in EXITS:
        if target == "lead":
            return None  # captured again while in nurture: stays where it is
        return Move(target, f"{event_type}: re-entered the funnel from {stage}")
    if RANK[stage] < RANK[target]:
        skipped = FUNNEL[RANK[stage] + 1 : RANK[target]]
        note = f" (skipped {', '.join(skipped)})" if skipped and stage != "anonymous" else ""
        return Move(target, f"{event_type}{note}")
    if target == "lead":
        return None  # capture details arriving after the lead moved on
    return Anomaly(f"{event_type} while already {stage} (past {target})")


def next_stage(stage: str, event_type: str, data: dict[str, Any] | Any) -> Outcome:
    """What `event_type` does to a lead in `stage`: a `Move`, an `Anomaly`, or nothing."""
    if event_type in FORWARD:
        return _forward(stage, FORWARD[event_type], event_type)
    reason = data.get("reason") if hasattr(data, "get") else None
    because = f": {reason}" if reason else ""
    if event_type == "sales.rejected":
        if stage in ("lead", "mql", "sal"):
            return Move("recycled", f"sales rejected{because}")
        return Anomaly(f"sales.rejected while {stage} (only a lead, mql or sal can be rejected)")
    if event_type == "sales.disqualified":
        if stage in ("customer", "disqualified"):
            return Anomaly(f"sales.disqualified while {stage}")
        return Move("disqualified", f"disqualified{because}")
    if event_type == "lead.nurture_enrolled":
        if stage in ("opportunity", "customer", "nurture"):
            return Anomaly(f"lead.nurture_enrolled while {stage}")
        return Move("nurture", f"enrolled in nurture{because}")
    if event_type == "deal.lost":
        if stage in ("sql", "opportunity"):
            return Move("lost", f"deal lost{because}")
        return Anomaly(f"deal.lost while {stage} (no open opportunity)")
    return None
