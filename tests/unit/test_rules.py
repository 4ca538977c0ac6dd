from __future__ import annotations

from pathlib import Path

import pytest

from engine.domain.errors import RulesError
from engine.domain.rules import load_rules, parse_rules


def test_default_rules_load_and_every_type_is_known() -> None:
    rules = load_rules()
    assert rules.ref == "default@2026.1"
    assert rules.fit.rules and rules.engagement.rules


def test_errors_name_the_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        'name: x\nversion: "1"\nengagement:\n  rules:\n    - id: a\n      types: [touch.nope]\n'
        "      points: 3\n"
    )
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert f"{path}:5" in str(info.value) and "touch.nope" in str(info.value)


def test_weights_must_sum_to_one_and_conditions_need_operators() -> None:
    with pytest.raises(RulesError, match=r"must be 1\.0"):
        parse_rules('name: x\nversion: "1"\ncombine: {fit_weight: 0.7, engagement_weight: 0.7}\n')
    with pytest.raises(RulesError, match="needs an operator"):
        parse_rules(
            'name: x\nversion: "1"\nfit:\n  rules:\n    - {id: a, when: [{field: x}], points: 1}\n'
        )


def test_unknown_keys_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="Extra inputs"):
        parse_rules('name: x\nversion: "1"\nmql: {totl_at_least: 3}\n')
    with pytest.raises(RulesError, match="not valid YAML"):
        parse_rules("name: [x\n")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_routing_sla_personas_and_models_are_validated_with_lines() -> None:
    base = 'name: x\nversion: "1"\n'
    with pytest.raises(RulesError, match=r"<rules>:7: routing.queues.0.strategy: Input should be"):
        parse_rules(
            base + "routing:\n  queues:\n    - id: q\n      reps: [{id: a}]\n"
            "      strategy: random\n"
        )
    with pytest.raises(RulesError, match=r"lists rep\(s\) \['a'\] more than once"):
        parse_rules(base + "routing:\n  queues:\n    - {id: q, reps: [{id: a}, {id: a}]}\n")
    with pytest.raises(RulesError, match=r"queue id\(s\) \['q'\] used more than once"):
        parse_rules(
            base + "routing:\n  queues:\n    - {id: q, reps: [{id: a}]}\n"
            "    - {id: q, reps: [{id: b}]}\n"
        )
    with pytest.raises(RulesError, match="unknown timezone 'Mars/Base'"):
        parse_rules(base + "sla:\n  business_hours: {timezone: Mars/Base}\n")
    with pytest.raises(RulesError, match=r"scoring model name\(s\) \['x'\] used more than once"):
        parse_rules(base + 'models:\n  - {name: x, version: "2"}\n')
    with pytest.raises(RulesError, match=r"<rules>:6: personas.0.rules.0.points"):
        parse_rules(
            base + "personas:\n  - id: p\n    rules:\n"
            "      - {id: r, when: [{field: seniority, equals: vp}], points: lots}\n"
        )


def test_default_rules_define_every_feature() -> None:
    rules = load_rules()
    assert [m.name for m in rules.all_models()] == ["default", "enterprise"]
    assert rules.personas and rules.routing and rules.sla
    assert {q.strategy for q in rules.routing.queues} == {
        "round_robin",
        "weighted_round_robin",
        "least_loaded",
    }
