"""A lead's account as of a moment, folded from its recorded match decisions
(`engine.domain.accounts.replay`): the fold of a prefix of the decisions in log order is the
account the lead was in after them, whatever order the decisions are handed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.accounts.replay import RecordedDecision, match_as_of

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _decision(i: int, account: str, joined: bool) -> RecordedDecision:
    return RecordedDecision(
        account_key=account,
        joined=joined,
        rule="domain" if joined else None,
        reason=f"decision {i}",
        candidates=(account,),
        rules_version="r1",
        decided_at=T0 + timedelta(hours=i),
        recorded_at=T0 + timedelta(minutes=i // 2),  # two decisions per minute: a move
        position=i,
    )


def _moves(targets: list[str | None]) -> list[RecordedDecision]:
    """A lead's decisions as the projector records them: leaving its account, then joining
    the next (None: no account)."""
    out: list[RecordedDecision] = []
    current: str | None = None
    for target in targets:
        if target == current:
            continue
        if current is not None:
            out.append(_decision(len(out), current, False))
        if target is not None:
            out.append(_decision(len(out), target, True))
        current = target
    return out


@given(
    st.lists(st.sampled_from(["a1", "a2", "a3", None]), max_size=12),
    st.randoms(use_true_random=False),
    st.integers(0, 30),
)
def test_the_fold_to_a_moment_is_the_account_after_the_decisions_by_then(
    targets: list[str | None], rnd: object, cut: int
) -> None:
    decisions = _moves(targets)
    shuffled = list(decisions)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for clock, at in (("recorded", lambda d: d.recorded_at), ("occurred", lambda d: d.decided_at)):
        moment = T0 + (timedelta(minutes=cut) if clock == "recorded" else timedelta(hours=cut))
        by_then = [d for d in decisions if at(d) <= moment]
        expected: str | None = None  # the reference: apply them in log order
        for d in by_then:
            expected = d.account_key if d.joined else None
        got = match_as_of(shuffled, moment, clock)  # type: ignore[arg-type]
        assert (got.joined.account_key if got.joined else None) == expected
        assert got.decisions == len(by_then)
        if got.joined is None and by_then:
            assert got.left == by_then[-1] and not by_then[-1].joined


def test_a_baseline_counts_from_its_inputs_time_on_either_clock() -> None:
    """A match taken before decisions were recorded (migration 22) is recorded as a baseline
    with the decision that first changes it: it holds from its inputs' time (the earliest it
    can have been taken) on both clocks, before the later decisions; before that, nothing."""
    recorded = T0 + timedelta(days=10)
    baseline = RecordedDecision(
        account_key="a1",
        joined=True,
        rule="name",
        reason="then",
        candidates=("a1",),
        rules_version="r1",
        decided_at=T0 + timedelta(days=1),
        recorded_at=recorded,
        position=1,
        baseline=True,
    )
    left = RecordedDecision("a1", False, None, "renamed", ("a1",), "r1", T0 + timedelta(days=9),
                            recorded, 2)  # fmt: skip
    joined = RecordedDecision("a2", True, "name", "now", ("a2",), "r1", T0 + timedelta(days=9),
                              recorded, 3)  # fmt: skip
    decisions = [joined, left, baseline]
    for clock in ("recorded", "occurred"):
        assert match_as_of(decisions, T0, clock).joined is None  # type: ignore[arg-type]
        then = match_as_of(decisions, T0 + timedelta(days=2), clock)  # type: ignore[arg-type]
        assert then.joined == baseline and then.joined.baseline
    assert match_as_of(decisions, recorded).joined == joined


def test_a_member_decision_stored_before_baselines_reads_as_no_baseline() -> None:
    """`Account.MemberDecided` version 1 (stored before `baseline`) decodes with it False."""
    from dataclasses import replace

    from engine.aggregates.account import Account
    from engine.services.application import LeadEngine
    from tests.conftest import POPO_ENV

    app = LeadEngine(env=POPO_ENV)
    try:
        account = Account("a1")
        account.decide_member(lead_id="l", joined=True, rule="name", reason="r",
                              candidates=["a1"], rules_version="r1", decided_at=T0)  # fmt: skip
        event = account.collect_events()[-1]
        stored = app.mapper.to_stored_event(event)
        state = app.mapper.transcoder.decode(stored.state)
        assert state.pop("class_version") == 2 and state.pop("baseline") is False
        old = replace(stored, state=app.mapper.transcoder.encode(state))
        decoded = app.mapper.to_domain_event(old)
        assert isinstance(decoded, Account.MemberDecided) and decoded.baseline is False
    finally:
        app.close()
