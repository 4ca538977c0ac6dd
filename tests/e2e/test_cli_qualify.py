"""`lead explain --model`, `report sla`, `whatif` and `rules check` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import ROOT
from tests.inprocess import run_in_process as run


def test_explain_sla_whatif_and_rules_check(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run(cli_env, "generate", "--leads", "150", "--seed", "4", "-o", str(path))
    run(cli_env, "ingest", str(path))
    states = json.loads(
        run(
            cli_env, "report", "sla", "--occurred-by", "2026-12-31T00:00:00Z", "--format", "json"
        ).stdout
    )
    assert states["routed_leads"] > 0
    assert sum(r["leads"] for r in states["by_owner"]) == states["routed_leads"]
    for row in states["by_owner"]:  # every routed lead's first-touch timer has one status
        assert row["leads"] == sum(
            row[f"first_touch_{s}"] for s in ("met", "at_risk", "breached", "pending")
        )
    early = json.loads(
        run(
            cli_env, "report", "sla", "--occurred-by", "2025-01-01T00:00:00Z", "--format", "json"
        ).stdout
    )
    assert early["routed_leads"] == 0  # nobody was routed before the history began

    lead = states["attention"][0]["lead"] if states["attention"] else "crm-0000001"
    doc = json.loads(
        run(cli_env, "lead", "explain", lead, "--model", "enterprise", "--format", "json").stdout
    )
    assert doc["rules"] == "enterprise@2026.1"
    assert [m["model"] for m in doc["models"]] == ["default@2026.1", "enterprise@2026.1"]
    assert doc["sla"] is not None and doc["sla"]["owner"]
    bad = run(cli_env, "lead", "explain", lead, "--model", "nope", ok=False)
    assert bad.returncode != 0 and "no scoring model named 'nope'" in bad.stderr

    default = (ROOT / "engine" / "default_rules.yaml").read_text()
    looser = tmp_path / "looser.yaml"
    looser.write_text(
        default.replace("total_at_least: 50", "total_at_least: 35").replace(
            'version: "2026.1"', 'version: "try"', 1
        )
    )
    same = json.loads(
        run(
            cli_env,
            "whatif",
            "--rules",
            str(ROOT / "engine" / "default_rules.yaml"),
            "--format",
            "json",
        ).stdout
    )
    assert same["leads_changed"] == 0 and same["facts"] > 1000
    what = json.loads(run(cli_env, "whatif", "--rules", str(looser), "--format", "json").stdout)
    later = run(cli_env, "whatif", "--rules", str(looser), "--since", "2099-01-01").stdout
    read = f"{what['facts']:,} facts of {what['leads']:,} leads read"
    assert (
        "0 facts of 0 leads from 2099-01-01T00:00:00+00:00 on replayed under the new rules; "
        f"{read}" in " ".join(later.split())
    )
    assert what["rules_new"] == "default@try" and what["mql_new"] > what["mql_old"]
    text = run(cli_env, "whatif", "--rules", str(looser)).stdout
    assert "nothing written" in text and "Leads by current stage" in text
    many = run(cli_env, "whatif", "--rules", str(looser), "--workers", "9", "--format", "json")
    assert json.loads(many.stdout) == what  # said on stderr, the output is the same
    assert "whatif: using 1 worker (1 chunk of up to 1,000 leads), not the 9 asked for" in (
        many.stderr.splitlines()
    )

    broken = tmp_path / "broken.yaml"
    broken.write_text(default.replace("strategy: least_loaded", "strategy: coin_flip"))
    proc = run(cli_env, "rules", "check", str(broken), ok=False)
    line = 1 + default.splitlines().index("      strategy: least_loaded")
    assert proc.returncode != 0 and f"{broken}:{line}: routing.queues.1.strategy" in proc.stderr
    assert (
        "ok (default@2026.1"
        in run(cli_env, "rules", "check", str(ROOT / "engine" / "default_rules.yaml")).stdout
    )
