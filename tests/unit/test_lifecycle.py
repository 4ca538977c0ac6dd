from __future__ import annotations

from typing import Any

import pytest

from engine.domain.lifecycle import Anomaly, Move, next_stage


@pytest.mark.parametrize(
    ("stage", "event", "expected"),
    [
        ("anonymous", "lead.captured", "lead"),
        ("mql", "sales.accepted", "sal"),
        ("lead", "sales.accepted", "sal"),  # forward skip allowed
        ("sal", "sales.qualified", "sql"),
        ("sql", "opportunity.opened", "opportunity"),
        ("opportunity", "deal.won", "customer"),
        ("mql", "sales.rejected", "recycled"),
        ("sal", "sales.disqualified", "disqualified"),
        ("opportunity", "deal.lost", "lost"),
        ("lead", "lead.nurture_enrolled", "nurture"),
        ("nurture", "sales.accepted", "sal"),  # re-entry from an exit
        ("lost", "opportunity.opened", "opportunity"),
    ],
)
def test_moves(stage: str, event: str, expected: str) -> None:
    outcome = next_stage(stage, event, {"reason": "r"})
    assert isinstance(outcome, Move)
    assert outcome.to == expected


def test_skips_are_named_in_the_reason() -> None:
    outcome = next_stage("lead", "sales.qualified", {})
    assert isinstance(outcome, Move) and "skipped mql, sal" in outcome.reason


@pytest.mark.parametrize(
    ("stage", "event"),
    [
        ("customer", "sales.accepted"),
        ("sql", "sales.accepted"),
        ("customer", "deal.lost"),
        ("lead", "deal.lost"),
        ("customer", "sales.disqualified"),
        ("opportunity", "sales.rejected"),
        ("customer", "lead.nurture_enrolled"),
    ],
)
def test_anomalies_leave_the_stage_alone(stage: str, event: str) -> None:
    outcome = next_stage(stage, event, {})
    assert isinstance(outcome, Anomaly)
    assert event in outcome.reason


def test_reasons_from_upstream_are_kept() -> None:
    outcome = next_stage("sal", "sales.rejected", {"reason": "no budget"})
    assert isinstance(outcome, Move) and "no budget" in outcome.reason


def test_touches_and_repeat_captures_do_not_move() -> None:
    assert next_stage("lead", "touch.page_viewed", {}) is None
    assert next_stage("lead", "lead.captured", {}) is None
    assert next_stage("sal", "lead.captured", {}) is None


@pytest.mark.parametrize(
    ("stage", "event_type", "data", "expected"),
    [
        ("nurture", "sales.accepted", {}, Move("sal", "sales.accepted: re-entered the funnel "
                                                      "from nurture")),
        ("lead", "sales.qualified", {}, Move("sql", "sales.qualified (skipped mql, sal)")),
        ("mql", "sales.accepted", {}, Move("sal", "sales.accepted")),
        ("anonymous", "sales.accepted", {}, Move("sal", "sales.accepted")),  # no skip note
        ("lead", "sales.disqualified", {"reason": "student"}, Move("disqualified",
                                                                   "disqualified: student")),
        ("lead", "sales.disqualified", {}, Move("disqualified", "disqualified")),
        ("sal", "sales.rejected", {"reason": "no budget"}, Move("recycled",
                                                                "sales rejected: no budget")),
        ("lead", "lead.nurture_enrolled", {"reason": "later"}, Move("nurture",
                                                                   "enrolled in nurture: later")),
        ("sql", "deal.lost", {"reason": "price"}, Move("lost", "deal lost: price")),
        ("opportunity", "deal.lost", None, Move("lost", "deal lost")),  # data without .get
    ],
)  # fmt: skip
def test_each_move_says_why_exactly(stage: str, event_type: str, data: Any, expected: Move) -> None:
    assert next_stage(stage, event_type, data) == expected
