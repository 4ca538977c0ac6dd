"""Identity as a user runs it: ingest a cookie's clicks, the capture, a link, a duplicate and its
merge; `lead history` / `lead export` show the merge as a recorded decision, `lead show` the
person, `report identity` the decisions and people, `report funnel --as-of` two leads before
the merge and one after, `forget` on the cookie every key; a link naming its own subject is a
dead letter with the field named."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.inprocess import run_in_process as run
from tests.unit.test_stitching import anonymous_journey, duplicate, link, merged

EMAIL = "ada@example.org"


def write(path: Path, events: list[object]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _shown(env: dict[str, str], lead: str) -> Any:
    return json.loads(run(env, "lead", "show", lead, "--format", "json").stdout)


def test_identity_from_the_command_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = cli_env
    first = [e.model_dump(mode="json", exclude_none=True) for e in
             [*anonymous_journey(), link(), *duplicate()]]  # fmt: skip
    run(env, "ingest", str(write(tmp_path / "a.jsonl", first)))
    before = json.loads(run(env, "report", "funnel", "--format", "json").stdout)
    between = datetime.now(UTC).isoformat()  # recorded clock: after the first ingest
    run(env, "ingest", str(write(tmp_path / "b.jsonl", [merged().model_dump(mode="json")])))

    history = run(env, "lead", "history", "ada-2", "--format", "json").stdout
    (decision,) = [r for r in json.loads(history) if r["event"] == "merged (identity decision)"]
    # the other lead by id, never its key (a uuid's hex may hold the letters "ada" by chance)
    named = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", decision["detail"])
    assert "by crm-admin: same person" in named and "with lead <id>" in named
    assert "ada" not in named.replace("ada-2", "")
    export = json.loads(run(env, "lead", "export", "ada-2").stdout)
    (recorded,) = [d for d in export["decisions"] if d["kind"] == "Lead.Linked"]
    assert (recorded["relation"], recorded["by"]) == ("merged", "crm-admin")

    shown = json.loads(run(env, "lead", "show", "cookie-1", "--format", "json").stdout)
    assert len(shown["person"]["leads"]) == 3 and shown["person"]["stage"] == "sal"
    assert shown["person"]["first_touch"]["channel"] == "paid_search"

    now = json.loads(run(env, "report", "funnel", "--format", "json").stdout)
    then = json.loads(run(env, "report", "funnel", "--as-of", between, "--format", "json").stdout)
    assert (before["leads_total"], then["leads_total"], now["leads_total"]) == (2, 2, 1)

    report = json.loads(run(env, "report", "identity", "--format", "json").stdout)
    assert report["totals"] == {"linked": 1, "merged": 1, "unmerged": 0}
    assert report["people"] == {"joined": 1, "leads_in_them": 3, "largest": 3}
    earlier = json.loads(
        run(env, "report", "identity", "--as-of", between, "--format", "json").stdout
    )
    assert earlier["totals"]["merged"] == 0 and earlier["people"]["leads_in_them"] == 2
    assert "Identity decisions per week" in run(env, "report", "identity").stdout

    bad = {**link(id="bad").model_dump(mode="json"), "data": {"to": "cookie-1"}}
    refused = run(env, "ingest", str(write(tmp_path / "c.jsonl", [bad])), ok=False)
    assert refused.returncode == 1  # a rejected line: kept, and said in the exit code
    letters = run(env, "deadletters", "list", "--format", "json").stdout
    assert "data.to" in letters and "another lead key than the CloudEvent's subject" in letters

    ids = {k: _shown(env, k)["id"] for k in ("ada", "ada-2")}
    gone = json.loads(
        run(env, "forget", "cookie-1", "--reason", "ticket 3", "--format", "json").stdout
    )
    assert gone["erased"] and gone["person_leads_forgotten"] == 2
    for key in ("ada", "ada-2"):  # the person's every lead: by its lead id only (docs/audit.md)
        refused = run(env, "lead", "show", key, ok=False)
        assert refused.returncode == 2 and f"no lead with key '{key}'" in refused.stderr
        again = _shown(env, ids[key])
        assert again["key"].startswith("erased-") and again["email"] in (None, "(erased)")
