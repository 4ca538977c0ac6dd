"""Buying groups: roles from personas, the roles each segment requires, coverage by engaged
members, group engagement, the MQA rule requiring coverage, and the rules that refuse a
buying group that names what does not exist."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.accounts.buying_group import coverage
from engine.domain.accounts.profile import AccountProfile
from engine.domain.accounts.scoring import Member, decide_mqa, score, unmet
from engine.domain.errors import RulesError
from engine.domain.rules import load_rules, parse_rules

RULES = load_rules()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
BIG = AccountProfile("a1", name="Acme", industry="software", employees=5000, country="US", tier=1)
MID = AccountProfile("a2", name="Beta", industry="software", employees=500, country="US")
SMALL = AccountProfile("a3", name="Gamma", employees=20)


def test_segment_decides_the_required_roles() -> None:
    assert coverage(BIG, [], RULES.accounts).segment == "enterprise"
    assert coverage(MID, [], RULES.accounts).segment == "midmarket"
    assert coverage(SMALL, [], RULES.accounts).segment == "smb"
    got = coverage(MID, [], RULES.accounts)
    assert got.missing == ("economic-buyer", "champion") and got.covered == ()
    assert [(r.role, r.required) for r in got.roles] == [
        ("economic-buyer", True),
        ("champion", True),
        ("user", False),
    ]


def test_a_role_is_covered_only_by_an_engaged_member() -> None:
    members = [
        Member("l1", 35.0, "decision-maker"),
        Member("l2", 5.0, "champion"),  # holds the role but is not engaged (< 10)
        Member("l3", 80.0, None),  # engaged, no persona: no role
    ]
    got = coverage(MID, members, RULES.accounts)
    assert got.covered == ("economic-buyer",) and got.missing == ("champion",)
    roles = {r.role: r for r in got.roles}
    assert (roles["champion"].leads, roles["champion"].engaged) == (1, 0)
    assert roles["economic-buyer"].best_engagement == 35.0
    # group engagement: mean over the required roles of the best holder: (35 + 5) / 2
    assert got.engagement == 20.0


def test_mqa_can_require_the_buying_group() -> None:
    strict = RULES.accounts.model_copy(
        update={"mqa": RULES.accounts.mqa.model_copy(update={"buying_group_covered": True})}
    )
    two = [Member("l1", 60.0, "user"), Member("l2", 30.0, "user")]
    result = score(BIG, two, strict)
    assert unmet(result, RULES.accounts) == []  # the default rule does not ask for it
    assert unmet(result, strict) == [
        "buying group (enterprise) misses role(s) economic-buyer, champion"
    ]
    assert decide_mqa(result, strict, ref="r@1", trigger="e1", at=T0) is None
    full = [*two, Member("l3", 12.0, "decision-maker"), Member("l4", 15.0, "champion")]
    result = score(BIG, full, strict)
    decision = decide_mqa(result, strict, ref="r@1", trigger="e2", at=T0)
    assert decision is not None
    assert "covered: economic-buyer, champion, user" in decision.reason
    assert result.roles_missing == () and result.group_engagement == round((12 + 15 + 60) / 3, 2)


@given(
    st.lists(
        st.tuples(
            st.floats(0, 100, allow_nan=False),
            st.sampled_from([None, "decision-maker", "champion", "user"]),
        ),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_coverage_is_a_function_of_the_member_set(
    spec: list[tuple[float, str | None]], rnd: object
) -> None:
    role_of = RULES.accounts.buying_group.role_of_persona
    members = [Member(f"l{i}", e, p) for i, (e, p) in enumerate(spec)]
    shuffled = list(members)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = coverage(BIG, members, RULES.accounts), coverage(BIG, shuffled, RULES.accounts)
    assert a == b
    assert set(a.covered) | set(a.missing) == {"economic-buyer", "champion", "user"}
    assert not set(a.covered) & set(a.missing)
    assert 0 <= a.engagement <= 100
    for r in a.roles:
        holders = [e for e, p in spec if role_of.get(p or "") == r.role]
        assert r.covered == any(e >= 10 for e in holders)
        assert r.leads == len(holders)


def _with_group(group: dict[str, object]) -> str:
    raw = yaml.safe_load(resources.files("engine").joinpath("default_rules.yaml").read_text())
    raw["accounts"]["buying_group"] = group
    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    ("group", "error"),
    [
        (
            {"roles": [{"id": "x", "personas": ["nobody"]}]},
            "accounts.buying_group.roles name unknown persona(s) ['nobody']",
        ),
        (
            {
                "roles": [{"id": "x", "personas": ["user"]}],
                "segments": [{"id": "s", "required": ["x", "y"]}],
            },
            "segments 's' requires unknown role(s) ['y']",
        ),
        (
            {"roles": [{"id": "x", "personas": ["user"]}, {"id": "y", "personas": ["user"]}]},
            "persona 'user' is in roles 'x' and 'y'",
        ),
        (
            {"roles": [{"id": "x", "personas": ["user"]}, {"id": "x", "personas": ["champion"]}]},
            "roles: id(s) ['x'] used more than once",
        ),
    ],
)
def test_rules_refuse_a_buying_group_naming_what_does_not_exist(
    group: dict[str, object], error: str
) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(_with_group(group), source="r.yaml")
    assert error in str(caught.value)


def test_account_conditions_name_known_fields_and_ranges_that_can_hold() -> None:
    """A misspelt firmographic, a NaN bound or gte above lte would never hold: refused."""
    import pytest
    from pydantic import ValidationError

    from engine.domain.rules import AccountRules, Condition

    with pytest.raises(ValidationError, match="unknown account field 'employeez'"):
        AccountRules.model_validate(
            {"buying_group": {
                "roles": [{"id": "x", "personas": ["p"]}],
                "segments": [
                    {"id": "big", "when": [{"field": "employeez", "gte": 1000}], "required": ["x"]}
                ],
            }}
        )  # fmt: skip
    with pytest.raises(ValidationError, match="unknown account field 'industri'"):
        AccountRules.model_validate(
            {"fit": {"rules": [{"id": "f", "when": [{"field": "industri", "in": ["a"]}],
                                "points": 5}]}}
        )  # fmt: skip
    with pytest.raises(ValidationError):
        Condition.model_validate({"field": "employees", "gte": float("nan")})
    with pytest.raises(ValidationError, match="gte 10000 is above lte 200"):
        Condition.model_validate({"field": "employees", "gte": 10000, "lte": 200})
