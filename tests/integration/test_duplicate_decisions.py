"""Someone decides an open duplicate suggestion (docs/identity.md#duplicates):
`duplicates accept` records an engine merge naming who and why (one person; `lead history`
and `lead export` show it; an upstream lead.unmerged undoes it), `duplicates dismiss` records
a decision the rules honour (the pair is never suggested again); an unknown pair is refused
in one line, exit 2; `report duplicates --format csv` lists the open suggestions."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from engine.domain.contract import Envelope, validate_event
from engine.runtime import Runtime
from tests.factory import raw

EMAIL = "grace@navy.example"


def captured(key: str, day: int, n: int = 0) -> Envelope:
    at = datetime(2026, 3, 1 + day, 9, tzinfo=UTC)
    data = {"email": EMAIL, "name": "Grace"}
    return validate_event(raw("lead.captured", key, data, at=at, id=f"cap-{key}-{n}"))


def states(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(
            f"SELECT rule, winner_id, loser_id, state FROM {rt.db.schema}.duplicate_suggestions"
        ).fetchall()


def suggested(rt: Runtime) -> tuple[uuid.UUID, uuid.UUID]:
    rt.app.ingest([captured("grace-crm", 0)])
    rt.app.ingest([captured("grace-web", 2)])
    rt.projector.run(until_caught_up=True)
    crm, web = rt.app.lead_id("grace-crm"), rt.app.lead_id("grace-web")
    assert states(rt) == [("same-email", crm, web, "open")]
    return crm, web


def test_accept_records_a_merge_by_whom_and_why_that_unmerge_undoes(
    runtime: Runtime, leadengine: Any
) -> None:
    crm, web = suggested(runtime)
    code, out = leadengine(
        "duplicates", "accept", str(crm), str(web), "--reason", "ticket 812", "--by", "ops"
    )
    assert code == 0, leadengine.stderr[-1]
    assert out.strip() == f"lead {web} merged into lead {crm} (same-email) by ops"
    assert states(runtime) == [("same-email", crm, web, "merged")]
    assert runtime.app.identity_map().people() == {crm: sorted([crm, web], key=str)}
    code, out = leadengine("lead", "history", "grace-web", "--format", "json")
    (row,) = [r for r in json.loads(out) if r["event"] == "merged (identity decision)"]
    assert f"one person with lead {crm} by ops" in row["detail"]
    assert "accepted duplicate suggestion (same-email): ticket 812" in row["detail"]
    code, out = leadengine("lead", "export", "grace-web")
    (decision,) = [d for d in json.loads(out)["decisions"] if d.get("relation") == "merged"]
    assert (decision["by"], decision["other_id"]) == ("ops", str(crm))
    # the read model's people follow (the command ran the projector)
    with runtime.db.connect() as conn:
        rows = conn.execute(
            f"SELECT lead_id, person_id FROM {runtime.db.schema}.lead_person ORDER BY 1"
        ).fetchall()
    assert sorted(rows) == sorted([(crm, crm), (web, crm)])
    # undone by an upstream lead.unmerged, as any merge
    data = {"winner": "grace-crm", "by": "crm-admin", "reason": "two people after all"}
    at = datetime.now(UTC)  # after the accept (dated when it was taken)
    undo = [validate_event(raw("lead.unmerged", "grace-web", data, at=at, id="u1"))]
    # the consumer's cached copy of the lead predates the decision: its save conflicts, and
    # the batch redone on a fresh read records the unmerge after the accept
    with pytest.raises(IntegrityError):
        runtime.app.ingest(undo)
    runtime.app.ingest(undo)
    assert runtime.app.identity_map().people() == {}
    assert states(runtime) == [("same-email", crm, web, "unmerged")]


def test_dismiss_is_a_recorded_decision_and_the_pair_is_not_suggested_again(
    runtime: Runtime, leadengine: Any
) -> None:
    crm, web = suggested(runtime)
    code, out = leadengine("duplicates", "dismiss", str(crm), str(web), "--reason", "t-9")
    assert code == 0, leadengine.stderr[-1]
    assert "dismissed as a duplicate of" in out
    assert states(runtime) == [("same-email", crm, web, "dismissed")]
    later = [captured("grace-web", 3, n=1), captured("grace-crm", 4, n=1)]
    with pytest.raises(IntegrityError):  # a stale cached copy: redone on a fresh read
        runtime.app.ingest(later)
    runtime.app.ingest(later)
    assert states(runtime) == [("same-email", crm, web, "dismissed")]  # not suggested again
    code, out = leadengine("report", "duplicates", "--format", "json")
    assert json.loads(out)["open"] == {}
    assert runtime.app.identity_map().people() == {}
    code, out = leadengine("lead", "history", "grace-web", "--format", "json")
    (row,) = [r for r in json.loads(out) if r["event"] == "duplicate dismissed (decision)"]
    assert row["detail"].startswith(f"not one person with lead {crm} (same-email) by ")
    assert row["detail"].endswith(": t-9")
    code, out = leadengine("lead", "export", "grace-web")
    assert [d["rule"] for d in json.loads(out)["decisions"] if "rule" in d] == ["same-email"]
    # a dismissed pair cannot be dismissed or accepted again
    code, _ = leadengine("duplicates", "accept", str(crm), str(web), "--reason", "t-10")
    assert code == 2


def test_an_unknown_pair_is_refused_in_one_line(runtime: Runtime, leadengine: Any) -> None:
    crm, web = suggested(runtime)
    for winner, loser in ((web, crm), (uuid.uuid4(), web)):  # reversed, unknown
        code, out = leadengine("duplicates", "accept", str(winner), str(loser), "--reason", "x")
        err = leadengine.stderr[-1].strip()
        assert (code, out) == (2, "")
        assert "\n" not in err and "no open duplicate suggestion" in err
        assert "Traceback" not in err
    assert states(runtime) == [("same-email", crm, web, "open")]
    assert runtime.app.get_lead("grace-web").links == []


def test_a_decision_keeps_the_contracts_limits(runtime: Runtime, leadengine: Any) -> None:
    """--reason and --by hold what an upstream lead.merged may (the decision is relayed like
    one): over-long, blank or NUL text is refused in one line and nothing is recorded."""
    crm, web = suggested(runtime)
    cases = (
        (["--reason", "x" * 501], "--reason"),
        (["--reason", "ok", "--by", "b" * 201], "--by"),
        (["--reason", "   "], "non-blank --reason"),
        (["--reason", "a\x00b"], "U+0000"),
    )
    for extra, said in cases:
        code, out = leadengine("duplicates", "accept", str(crm), str(web), *extra)
        err = leadengine.stderr[-1].strip()
        assert (code, out) == (2, ""), extra
        assert "\n" not in err and said in err and "Traceback" not in err, err
    assert states(runtime) == [("same-email", crm, web, "open")]
    assert runtime.app.get_lead("grace-web").links == []


def test_report_duplicates_csv_lists_the_open_suggestions(
    runtime: Runtime, leadengine: Any
) -> None:
    crm, web = suggested(runtime)
    code, out = leadengine("report", "duplicates", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    (s,) = [r for r in rows if r["row"] == "suggestion"]
    assert (s["rule"], s["winner_id"], s["loser_id"]) == ("same-email", str(crm), str(web))
    (p,) = [r for r in rows if r["row"] == "period"]
    assert (p["rule"], p["open"], p["dismissed"]) == ("same-email", "1", "0")
