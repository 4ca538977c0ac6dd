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
