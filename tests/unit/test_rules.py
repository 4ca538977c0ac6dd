from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import RulesError
from engine.rules import load_rules, parse_rules


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
