"""`duplicates accept` dates its merge by the clock when it is run; an upstream `lead.unmerged`
dated before it would undo nothing (the identity map takes back only earlier joins) while the
pair turned `unmerged`. It is now refused: `ingest` keeps it as a dead letter whose reason names
the merge and the time to send it after; the pair stays merged, the leads one person. The same
unmerge dated after the accept undoes it (pair unmerged, two people)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine.runtime import Runtime
from tests.factory import raw
from tests.integration.test_duplicate_decisions import states, suggested

UNDO = {"winner": "grace-crm", "by": "crm-admin", "reason": "two people after all"}


def ingest(leadengine: Any, tmp_path: Path, event: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / f"{event['id']}.jsonl"
    path.write_text(json.dumps(event) + "\n")
    return leadengine("ingest", str(path), "--format", "json")  # type: ignore[no-any-return]


def test_an_unmerge_dated_before_the_accept_is_a_dead_letter_one_after_undoes_it(
    runtime: Runtime, leadengine: Any, tmp_path: Path
) -> None:
    crm, web = suggested(runtime)
    before_accept = datetime.now(UTC) - timedelta(minutes=5)
    code, _ = leadengine(
        "duplicates", "accept", str(crm), str(web), "--reason", "t-9", "--by", "ops"
    )
    assert code == 0, leadengine.stderr[-1]

    code, out = ingest(
        leadengine,
        tmp_path,
        raw("lead.unmerged", "grace-web", UNDO, at=before_accept, id="u-early"),
    )
    counts = json.loads(out)
    assert (code, counts["accepted"], counts["conflicts"]) == (0, 0, 1), out  # kept, as conflicts
    code, out = leadengine("deadletters", "list", "--format", "json")
    assert code == 0
    (letter,) = json.loads(out)
    reason = letter["error"]
    assert (letter["event_id"], letter["field"]) == ("u-early", "time")
    assert (
        "lead.unmerged at" in reason
        and f"precedes the merge of lead {web} and lead {crm}" in reason
    )
    assert "duplicates-accept:" in reason and "grace" not in reason  # ids, never a key
    assert states(runtime) == [("same-email", crm, web, "merged")]  # the pair's state is right
    runtime.app.clear_cache()
    assert runtime.app.identity_map().people() == {crm: sorted([crm, web], key=str)}

    later = datetime.now(UTC) + timedelta(seconds=1)
    code, out = ingest(
        leadengine, tmp_path, raw("lead.unmerged", "grace-web", UNDO, at=later, id="u-late")
    )
    assert code == 0 and json.loads(out)["accepted"] == 1
    assert states(runtime) == [("same-email", crm, web, "unmerged")]
    runtime.app.clear_cache()
    assert runtime.app.identity_map().people() == {}
