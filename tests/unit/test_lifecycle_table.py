# ruff: noqa: E501  (the lifecycle table is one row per event type, one column per stage)
"""Every stage x every event type, with the expected outcome written out by hand.

Codes: a stage name = Move to that stage, "!" = Anomaly (stage kept), "-" = no-op (None).
Columns follow STAGE_ORDER. The table is the specification: it is not derived from engine.lifecycle.
"""

from __future__ import annotations

import pytest

from engine.domain.lifecycle import STAGES, Anomaly, Move, next_stage

STAGE_ORDER = (
    "anonymous", "lead", "mql", "sal", "sql", "opportunity", "customer",
    "nurture", "recycled", "disqualified", "lost",
)  # fmt: skip

_ = "-"
A = "!"
#: Short names for the target stage of a Move.
TO = {
    "LEAD": "lead", "SAL": "sal", "SQL": "sql", "OPP": "opportunity", "CUST": "customer",
    "NURT": "nurture", "RECY": "recycled", "DISQ": "disqualified", "LOST": "lost",
}  # fmt: skip
TABLE: dict[str, tuple[str, ...]] = {
    #                          anon    lead    mql     sal     sql     opp     cust    nurt    recy    disq    lost
    "lead.captured":          ("LEAD", _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    "sales.accepted":         ("SAL",  "SAL",  "SAL",  A,      A,      A,      A,      "SAL",  "SAL",  "SAL",  "SAL"),
    "sales.qualified":        ("SQL",  "SQL",  "SQL",  "SQL",  A,      A,      A,      "SQL",  "SQL",  "SQL",  "SQL"),
    "opportunity.opened":     ("OPP",  "OPP",  "OPP",  "OPP",  "OPP",  A,      A,      "OPP",  "OPP",  "OPP",  "OPP"),
    "deal.won":               ("CUST", "CUST", "CUST", "CUST", "CUST", "CUST", A,      "CUST", "CUST", "CUST", "CUST"),
    "sales.rejected":         (A,      "RECY", "RECY", "RECY", A,      A,      A,      A,      A,      A,      A),
    "sales.disqualified":     ("DISQ", "DISQ", "DISQ", "DISQ", "DISQ", "DISQ", A,      "DISQ", "DISQ", A,      "DISQ"),
    "lead.nurture_enrolled":  ("NURT", "NURT", "NURT", "NURT", "NURT", A,      A,      A,      "NURT", "NURT", "NURT"),
    "deal.lost":              (A,      A,      A,      A,      "LOST", "LOST", A,      A,      A,      A,      A),
    "lead.profile_updated":   (_,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    "touch.email_opened":     (_,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    "touch.meeting_held":     (_,      _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
    "rep.availability_changed": (_,    _,      _,      _,      _,      _,      _,      _,      _,      _,      _),
}  # fmt: skip

CASES = [
    (stage, event, row[i]) for event, row in TABLE.items() for i, stage in enumerate(STAGE_ORDER)
]


def test_table_covers_every_stage() -> None:
    assert set(STAGE_ORDER) == set(STAGES)
    assert all(len(row) == len(STAGE_ORDER) for row in TABLE.values())


@pytest.mark.parametrize(("stage", "event", "expected"), CASES)
def test_lifecycle_table(stage: str, event: str, expected: str) -> None:
    outcome = next_stage(stage, event, {})
    if expected == _:
        assert outcome is None, f"{event} from {stage}: expected no-op, got {outcome}"
    elif expected == A:
        assert isinstance(outcome, Anomaly), (
            f"{event} from {stage}: expected anomaly, got {outcome}"
        )
        assert event in outcome.reason and stage in outcome.reason
    else:
        assert isinstance(outcome, Move), f"{event} from {stage}: expected move, got {outcome}"
        assert outcome.to == TO[expected]
