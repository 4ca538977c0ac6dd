"""`whatif --rules` over accounts: how many accounts meet the MQA rule under the current and
the new rules, from the replayed leads, with the accounts gained and lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.runtime import Runtime
from tests.integration.test_accounts import ingest, story

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "engine" / "default_rules.yaml").read_text()
MQA = "  mqa:\n    total_at_least: 60\n    fit_at_least: 40\n    engaged_leads_at_least: 2\n"


def rules_file(tmp_path: Path, name: str, mqa: str) -> Path:
    assert MQA in DEFAULT  # the shipped MQA rule this test rewrites
    path = tmp_path / f"{name}.yaml"
    text = DEFAULT.replace(MQA, mqa).replace('version: "2026.1"', f'version: "{name}"', 1)
    path.write_text(text)
    return path


def test_whatif_counts_mqas_under_both_rules(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    ingest(runtime, story())
    same = rules_file(tmp_path, "same", MQA)
    code, out = leadengine("whatif", "--rules", str(same), "--format", "json")
    doc = json.loads(out)
    # a1 qualifies (two engaged leads, score 85), a2 and a3 do not (one lead each)
    assert code == 0 and (doc["mqa_old"], doc["mqa_new"]) == (1, 1)
    assert doc["mqa_gained"] == doc["mqa_lost"] == []

    stricter = rules_file(
        tmp_path, "strict", "  mqa:\n    total_at_least: 90\n    engaged_leads_at_least: 2\n"
    )
    doc = json.loads(leadengine("whatif", "--rules", str(stricter), "--format", "json")[1])
    assert (doc["mqa_old"], doc["mqa_new"], doc["mqa_lost"]) == (1, 0, ["a1"])

    looser = rules_file(tmp_path, "loose", "  mqa:\n    total_at_least: 0\n")  # every account
    doc = json.loads(leadengine("whatif", "--rules", str(looser), "--format", "json")[1])
    assert (doc["mqa_new"], doc["mqa_gained"], doc["mqa_lost"]) == (3, ["a2", "a3"], [])
    code, text = leadengine("whatif", "--rules", str(stricter))
    assert code == 0 and "Accounts meeting the MQA rule at the end: 1 -> 0" in text
    assert "lost: a1" in text


def test_whatif_mqa_counts_are_the_same_in_worker_processes(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Each worker hands back its leads' account signals; the counts are taken once all are
    in: one lead per task on two forked workers gives the bytes of the one-process run."""
    from engine.analytics.account_queries import profiles
    from engine.domain.rules import load_rules
    from engine.domain.whatif import facts_from_log, replay

    ingest(runtime, story())
    looser = load_rules(rules_file(tmp_path, "loose", "  mqa:\n    total_at_least: 0\n"))
    facts, accounts = list(facts_from_log(runtime.app)), profiles(runtime.db)
    docs = [
        json.dumps(
            replay(facts, runtime.rules, looser, workers=w, chunk=c, accounts=accounts).summary(),
            sort_keys=True,
            default=str,
        )
        for w, c in ((1, 1000), (2, 1))
    ]
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert (doc["mqa_old"], doc["mqa_new"], doc["mqa_gained"]) == (1, 3, ["a2", "a3"])
