"""`lead show/history/explain/export` take a lead id (the keyed hash every output and report
shows) as well as the key: the same answer either way. An id no lead has is refused in one
line naming only what was typed. Once forgotten, a lead is found by its id (its pseudonymised
history, for auditors) and no longer by its key, refused as a key no lead ever had; nothing
prints its erased key (docs/audit.md, "Finding a forgotten lead")."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.factory import raw
from tests.inprocess import run_in_process as run

KEY = "ada.lovelace@example.com"


def test_a_lead_is_found_by_its_id_as_by_its_key(cli_env: dict[str, str], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    facts = [
        raw("lead.captured", KEY, {"email": KEY, "country": "DE"}),
        raw("touch.page_viewed", KEY, {"channel": "web"}, days=1),
    ]
    events.write_text("".join(json.dumps(e) + "\n" for e in facts))
    run(cli_env, "ingest", str(events))
    by_key = json.loads(run(cli_env, "lead", "show", KEY, "--format", "json").stdout)
    lead_id = by_key["id"]
    assert json.loads(run(cli_env, "lead", "show", lead_id, "--format", "json").stdout) == by_key
    for command in ("history", "explain"):
        want = run(cli_env, "lead", command, KEY, "--format", "json").stdout
        assert run(cli_env, "lead", command, lead_id, "--format", "json").stdout == want
    exported = json.loads(run(cli_env, "lead", "export", lead_id).stdout)
    again = json.loads(run(cli_env, "lead", "export", KEY).stdout)
    assert exported.pop("exported_at") <= again.pop("exported_at")  # the clock when run
    assert exported == again

    nobody = str(uuid.uuid4())
    missing = run(cli_env, "lead", "history", nobody, ok=False)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"leadengine: no lead with key or lead id '{nobody}'"

    run(cli_env, "forget", KEY, "--reason", "ticket-1")
    for command in ("show", "history", "explain", "export"):
        gone = run(cli_env, "lead", command, lead_id)  # found by its id: the auditor's way
        assert KEY not in gone.stdout + gone.stderr and lead_id in gone.stdout, command
        by_key = run(cli_env, "lead", command, KEY, ok=False)  # never by the key it had
        never = run(cli_env, "lead", command, "grace.hopper@example.com", ok=False)
        assert by_key.returncode == never.returncode == 2, command
        assert by_key.stderr.replace(KEY, "grace.hopper@example.com") == never.stderr
        assert by_key.stdout == "" and "Traceback" not in by_key.stderr


def _header(text: str) -> str:
    """A table's title (its first paragraph), joined back where it wrapped."""
    return " ".join(text.split("\n\n", 1)[0].split())


def test_the_header_names_the_key_and_the_lead_id_by_either(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A hostile trial: `lead show <lead id>` printed the key alone, and nothing said which
    lead id it was; by key or by id, each header names both (once forgotten: the id alone)."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(raw("lead.captured", KEY, {"email": KEY})) + "\n")
    run(cli_env, "ingest", str(events))
    lead_id = json.loads(run(cli_env, "lead", "show", KEY, "--format", "json").stdout)["id"]
    both = f"{KEY} (lead id {lead_id})"
    want = {
        "show": f"Lead {both}",
        "history": f"History of lead {both}",
        "explain": f"Score of {both} as of",
    }
    for command, start in want.items():
        for who in (KEY, lead_id):
            assert _header(run(cli_env, "lead", command, who).stdout).startswith(start), (
                command,
                who,
            )
    shown = run(cli_env, "lead", "show", lead_id).stdout
    assert ["lead", "id", lead_id] in [line.split() for line in shown.splitlines()]
    run(cli_env, "forget", KEY, "--reason", "ticket-1")
    gone = f"{lead_id} (forgotten: its key is erased)"
    for command, start in want.items():
        out = run(cli_env, "lead", command, lead_id).stdout
        assert _header(out).startswith(start.replace(both, gone)), (command, out[:300])
        assert KEY not in out
