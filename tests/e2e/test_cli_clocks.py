"""Every command's clocks as a user runs them (issue 14): `--as-of T` = what the engine had
recorded by T, so an event recorded after T that happened before T is left out and the answer
is the one the engine gave at T; `--occurred-by T` = what had happened by T, late facts
included; `report funnel` takes --from/--to/--as-of/--occurred-by. The commands run in-process
(tests/inprocess.py): the test is about their answers, not their processes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.inprocess import run_in_process as run

SCORED = "touch.page_viewed"  # has an engagement rule, so it shows in `lead explain`


def _json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, *args, "--format", "json").stdout)


def _split(path: Path, tmp_path: Path) -> tuple[Path, Path, str, dict[str, Any], set[str]]:
    """Every third lead, and one page view of a lead of the first part, arrive late."""
    events = [json.loads(line) for line in path.read_text().splitlines()]
    keys = sorted({e["subject"] for e in events if str(e.get("subject", "")).startswith("crm-")})
    late_leads = set(keys[::3])
    lead = next(k for k in keys if k not in late_leads)
    views = [e for e in events if e.get("subject") == lead and e["type"] == SCORED]
    held = views[len(views) // 2]
    first = [e for e in events if e.get("subject") not in late_leads and e is not held]
    second = [e for e in events if e.get("subject") in late_leads or e is held]
    a, b = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    a.write_text("".join(json.dumps(e) + "\n" for e in first))
    b.write_text("".join(json.dumps(e) + "\n" for e in second))
    return a, b, lead, held, late_leads


def _without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in names}


def test_as_of_is_recorded_by_and_occurred_by_is_happened_by(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    run(cli_env, "generate", "--leads", "60", "--seed", "3", "-o", str(path))
    first, second, lead, held, late_leads = _split(path, tmp_path)
    run(cli_env, "ingest", str(first))
    time.sleep(0.05)
    t = datetime.now(UTC).isoformat()  # T: the late events are not recorded yet
    asked = {
        "funnel": ("report", "funnel", "--as-of", t),
        "sla": ("report", "sla", "--as-of", t),
        "attribution": ("report", "attribution", "--as-of", t),
        "kpis": ("report", "kpis", "--as-of", t),
        "show": ("lead", "show", lead, "--as-of", t),
        "history": ("lead", "history", lead, "--as-of", t),
        "explain": ("lead", "explain", lead, "--as-of", t),
    }
    at_t = {name: _json(cli_env, *args) for name, args in asked.items()}
    funnel_then = _json(cli_env, "report", "funnel")  # the read model's own funnel at T
    time.sleep(0.05)
    run(cli_env, "ingest", str(second))

    # --as-of T after the late events arrived: exactly what the engine said at T
    for name, args in asked.items():
        assert _json(cli_env, *args) == at_t[name], name
    assert not {a["lead"] for a in at_t["sla"]["attention"]} & late_leads
    history = at_t["history"]
    assert held["id"] not in json.dumps(history)
    explained = {line["event_id"] for line in at_t["explain"]["lines"]}
    assert held["id"] not in explained
    # show and explain score at T, decayed to then (a trial found show at the last event)
    assert at_t["show"]["score"]["as_of"] == at_t["explain"]["as_of"] == t
    assert at_t["show"]["score"]["total"] == at_t["explain"]["total"]
    # ... and the funnel as of T is the one `report funnel` printed at T
    assert _without(at_t["funnel"], "from", "to", "as_of", "occurred_by") == _without(
        funnel_then, "from", "to", "as_of", "occurred_by"
    )
    assert _json(cli_env, "report", "funnel")["leads_total"] > funnel_then["leads_total"]

    # --occurred-by: what had happened by then, the late view included
    by = held["time"]
    happened = _json(cli_env, "lead", "history", lead, "--occurred-by", by)
    assert held["id"] in json.dumps(happened)
    assert all(
        r["occurred_at"] is None or r["occurred_at"] <= by.replace("Z", "+00:00") for r in happened
    )
    explain = _json(cli_env, "lead", "explain", lead, "--occurred-by", by)
    assert held["id"] in {line["event_id"] for line in explain["lines"]}
    assert explain["as_of"].startswith(by.replace("Z", "")[:19])
    shown = _json(cli_env, "lead", "show", lead, "--occurred-by", by)
    assert shown["facts"] < _json(cli_env, "lead", "show", lead)["facts"]
    assert shown["score"]["as_of"] == explain["as_of"]
    assert shown["score"]["total"] == explain["total"]
    sla_then = _json(cli_env, "report", "sla", "--occurred-by", "2026-03-02T12:00:00Z")
    assert sla_then["occurred_by"] and sla_then["routed_leads"] > 0
    assert {a["lead"] for a in sla_then["attention"]} & late_leads  # late leads count here

    # report funnel --from/--to: the cohort created in the window, as `report kpis` counts it
    window = ("--from", "2026-01-15", "--to", "2026-03-01")
    funnel = _json(cli_env, "report", "funnel", *window)
    kpis = _json(cli_env, "report", "kpis", "--section", "funnel", *window)
    assert [(s["stage"], s["reached"]) for s in funnel["stages"]] == [
        (s["stage"], s["reached"]) for s in kpis["funnel"]
    ]
    assert 0 < funnel["leads_total"] < at_t["funnel"]["leads_total"] + len(late_leads)
    early = _json(cli_env, "report", "funnel", "--occurred-by", "2026-02-01")
    everything = _json(cli_env, "report", "funnel")
    assert early["leads_total"] < everything["leads_total"]
    assert (
        "--occurred-by 2026-02-01"
        in run(cli_env, "report", "funnel", "--occurred-by", "2026-02-01").stdout
    )

    # one clock at a time; errors name the flag the user typed
    both = run(cli_env, "report", "funnel", "--as-of", t, "--occurred-by", t, ok=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    rules = str(Path(__file__).resolve().parents[2] / "engine" / "default_rules.yaml")
    bad = run(cli_env, "whatif", "--rules", rules, "--since", "2026-02-30", ok=False)
    assert bad.returncode != 0 and "--since '2026-02-30'" in bad.stderr
    assert "--as-of" not in bad.stderr
