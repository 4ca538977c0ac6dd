"""The shipped rules' prose says what their numbers say (a description is read before YAML)."""

from __future__ import annotations

import re

from engine.domain.rules import load_rules


def _claims(description: str) -> dict[str, float]:
    """The numbers a description states: half-life, MQL threshold, fit floor."""
    patterns = {
        "half_life_days": r"(\d+(?:\.\d+)?)-day half-life",
        "total_at_least": r"MQL at (\d+(?:\.\d+)?)",
        "fit_at_least": r"fit at least (\d+(?:\.\d+)?)",
    }
    found = {k: re.search(p, description, re.IGNORECASE) for k, p in patterns.items()}
    return {k: float(m.group(1)) for k, m in found.items() if m}


def test_every_shipped_model_description_matches_its_numbers() -> None:
    rules = load_rules()
    checked = 0
    for model in rules.all_models():
        claims = _claims(model.description or "")
        actual = {
            "half_life_days": model.engagement.half_life_days,
            "total_at_least": model.mql.total_at_least,
            "fit_at_least": model.mql.fit_at_least,
        }
        for name, said in claims.items():
            assert said == actual[name], f"{model.ref}: description says {name} {said}"
            checked += 1
    assert checked >= 3  # the primary model states its half-life, MQL and fit threshold


def test_claims_reads_the_numbers_it_is_meant_to_check() -> None:
    text = "ICP, a 30-day half-life, MQL at 60 with fit at least 25."
    assert _claims(text) == {"half_life_days": 30, "total_at_least": 60, "fit_at_least": 25}
