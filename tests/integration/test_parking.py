"""One bad lead never stops a projection: it is parked with the reason, the rest moves on, and
`projections retry` (or a rebuild) brings it back once the fault is gone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from psycopg import sql

from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.projections import parking, rows
from engine.projections.projector import PROJECTIONS, TABLES, Projector
from engine.projections.rebuild import rebuild
from engine.projections.retry import retry
from engine.runtime import Runtime


def query(runtime: Runtime, text: str, *params: Any) -> list[tuple[Any, ...]]:
    with runtime.db.connect() as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(runtime.db.schema)))
        return conn.execute(text, params).fetchall()  # type: ignore[call-overload, no-any-return]


def snapshot(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    return {t: query(runtime, f"SELECT * FROM {t} ORDER BY 1, 2") for t in TABLES}


def clean_projection(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """What projecting the whole log from scratch, with no fault, gives."""
    with runtime.db.connect() as conn:
        for table in (*TABLES, "projection_tracking", "parked"):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(runtime.db.schema, table)))
    fresh = Projector(runtime.app, runtime.db, batch_size=97)
    try:
        fresh.run()
    finally:
        fresh.close()
    return snapshot(runtime)


def parked(runtime: Runtime) -> list[tuple[Any, ...]]:
    return query(
        runtime,
        "SELECT projection, originator_id, lead_key, error, reason, attempts FROM parked "
        "ORDER BY projection",
    )


@pytest.fixture
def journeys() -> tuple[list[Any], list[Any], str]:
    """Generated events in two halves, and a lead with touches in both."""
    events = [validate_event(e) for e in generate(40, seed=9)]
    half = len(events) // 2
    first, rest = events[:half], events[half:]

    def touched(part: list[Any]) -> set[str]:
        return {e.subject for e in part if e.type.startswith("touch.")}

    target = sorted(touched(first) & touched(rest))[0]
    return first, rest, target


def _raise_for(target: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def faulty(lead: Any, *args: Any, **kwargs: Any) -> Any:
        if lead.key == target:
            raise RuntimeError(f"injected fault for {lead.key}")
        return original(lead, *args, **kwargs)

    return faulty


def inject(
    kind: str, runtime: Runtime, target: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], None]:
    """Make projecting `target` fail; returns what removes the fault."""
    if kind == "fold":  # a Python error making one of its touch rows
        monkeypatch.setattr(rows, "touch_row", _raise_for(target, rows.touch_row))
    elif kind == "score":  # a Python error scoring it
        monkeypatch.setattr(rows, "lead_state_row", _raise_for(target, rows.lead_state_row))
    elif kind == "decode":  # its events cannot be decoded
        mapper = runtime.app.sealed_mapper
        original = mapper.to_domain_event
        bad = runtime.app.lead_id(target)

        def decode(stored: Any) -> Any:
            if stored.originator_id == bad:
                raise ValueError("injected undecodable event")
            return original(stored)

        monkeypatch.setattr(mapper, "to_domain_event", decode)
    else:  # the database rejects its lead_state row
        with runtime.db.connect() as conn:
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} ADD CONSTRAINT injected_fault CHECK (lead_key <> {})"
                ).format(sql.Identifier(runtime.db.schema, "lead_state"), sql.Literal(target))
            )

        def drop() -> None:
            with runtime.db.connect() as conn:
                conn.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT injected_fault").format(
                        sql.Identifier(runtime.db.schema, "lead_state")
                    )
                )

        return drop
    return monkeypatch.undo


FAULTS = {
    # kind: (the projections that park the lead, the error recorded)
    "fold": ({"touchpoints"}, "RuntimeError"),
    "score": ({"leads"}, "RuntimeError"),
    "decode": (set(PROJECTIONS), "ValueError"),
    "check": ({"leads"}, "CheckViolation"),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_a_failing_lead_is_parked_the_rest_moves_on_and_retry_brings_it_back(
    runtime: Runtime,
    journeys: tuple[list[Any], list[Any], str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    first, rest, target = journeys
    projections, error = FAULTS[kind]
    remove = inject(kind, runtime, target, monkeypatch)
    runtime.app.ingest(first)
    projector = runtime.projector
    projector.batch_size = 97  # several batches
    projector.run()
    head = runtime.app.recorder.max_notification_id()
    assert projector.positions() == dict.fromkeys(PROJECTIONS, head)  # nothing stopped
    found = parked(runtime)
    assert {p[0] for p in found} == projections
    for projection, originator, key, err, reason, attempts in found:
        known = None if kind == "decode" else target  # an undecodable event names no key
        assert (originator, key, err, attempts) == (runtime.app.lead_id(target), known, error, 1)
        assert target not in reason  # the key is scrubbed from the reason
        assert reason.startswith(error) or "writing lead_state" in reason
        gauge = REGISTRY.get_sample_value("leadengine_parked_leads", {"projection": projection})
        assert gauge == 1
    others = {e.subject for e in first if e.is_lead_event} - {target}
    state = {r[0] for r in query(runtime, "SELECT lead_key FROM lead_state")}
    assert others <= state  # every other lead is projected
    touched = {r[0] for r in query(runtime, "SELECT DISTINCT lead_key FROM lead_touchpoints")}
    assert {e.subject for e in first if e.type.startswith("touch.")} - {target} <= touched
    before = query(runtime, "SELECT * FROM lead_state WHERE lead_key = %s", target)

    runtime.app.ingest(rest)  # later events of the parked lead stop nothing
    projector.run()
    head = runtime.app.recorder.max_notification_id()
    assert projector.positions() == dict.fromkeys(PROJECTIONS, head)
    assert [p[5] for p in parked(runtime)] == [1] * len(projections)
    if "leads" in projections:  # its rows stay as last written
        assert query(runtime, "SELECT * FROM lead_state WHERE lead_key = %s", target) == before
    others = {e.subject for e in rest if e.is_lead_event} - {target}
    assert others <= {r[0] for r in query(runtime, "SELECT lead_key FROM lead_state")}

    remove()
    report = retry(runtime.app, runtime.db)
    assert (report.retried, report.unparked, report.still_parked) == (
        len(projections),
        len(projections),
        [],
    )
    assert parked(runtime) == []
    assert projector.parked() == dict.fromkeys(PROJECTIONS, 0)
    assert REGISTRY.get_sample_value("leadengine_parked_leads", {"projection": "leads"}) == 0
    assert projector.run() == 0
    after_retry = snapshot(runtime)
    assert after_retry == clean_projection(runtime)  # as if it had never failed


def test_a_retry_while_the_fault_remains_keeps_it_parked_with_one_more_attempt(
    runtime: Runtime,
    journeys: tuple[list[Any], list[Any], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, rest, target = journeys
    monkeypatch.setattr(rows, "touch_row", _raise_for(target, rows.touch_row))
    runtime.app.ingest(first + rest)
    runtime.projector.run()
    other = sorted({e.subject for e in first if e.is_lead_event} - {target})[0]
    assert retry(runtime.app, runtime.db, lead=other).retried == 0  # only the lead asked for
    report = retry(runtime.app, runtime.db, "touchpoints", lead=target)
    assert (report.retried, report.unparked) == (1, 0)
    (still,) = report.still_parked
    assert still["projection"] == "touchpoints" and still["attempts"] == 2
    assert (
        still["error"] == "RuntimeError" and "(_rows): injected fault for <key>" in still["reason"]
    )
    assert [p[5] for p in parked(runtime)] == [2]


def test_a_batch_folded_while_a_retry_brings_its_lead_back_is_projected_again(
    runtime: Runtime,
    journeys: tuple[list[Any], list[Any], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The projector read the parked list, then a retry unparked the lead and committed before
    the batch was written: the batch had skipped the lead's new events, so it is projected
    again (the retry held the positions; the batch's write waits for it, then sees it)."""
    first, rest, target = journeys
    monkeypatch.setattr(rows, "touch_row", _raise_for(target, rows.touch_row))
    runtime.app.ingest(first)
    projector = runtime.projector
    projector.run()
    assert [p[0] for p in parked(runtime)] == ["touchpoints"]
    monkeypatch.undo()
    runtime.app.ingest(rest)
    original, retried = parking.load, []

    def load_then_retry(*args: Any) -> Any:
        found = original(*args)
        if not retried:  # the retry commits while this batch is folded with `found`
            retried.append(retry(runtime.app, runtime.db))
        return found

    monkeypatch.setattr(parking, "load", load_then_retry)
    projector.batch_size = 100_000
    projector.run()
    assert retried[0].unparked == 1 and parked(runtime) == []
    assert snapshot(runtime) == clean_projection(runtime)


def test_a_rebuild_parks_instead_of_failing_and_a_rebuild_after_the_fix_brings_it_back(
    runtime: Runtime,
    journeys: tuple[list[Any], list[Any], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bulk load writes with COPY: a row the database rejects (here a NUL byte) parks its
    lead; the rebuilt projection switches in with the other leads, and its parked list."""
    first, rest, target = journeys
    runtime.app.ingest(first + rest)
    runtime.projector.run()
    clean = snapshot(runtime)
    original = rows.touch_row

    def nul(lead: Any, event: Any, position: int) -> tuple[Any, ...]:
        row = original(lead, event, position)
        return (*row[:5], "bad\x00campaign", *row[6:]) if lead.key == target else row

    monkeypatch.setattr(rows, "touch_row", nul)
    report = rebuild(runtime.app, runtime.db, "touchpoints", batch_size=200, workers=1)
    assert report.parked == 1
    assert report.position == runtime.app.recorder.max_notification_id()
    ((projection, originator, _key, error, reason, _attempts),) = parked(runtime)
    bad_id = runtime.app.lead_id(target)
    assert (projection, originator, error) == ("touchpoints", bad_id, "DataError")
    assert "lead_touchpoints" in reason and "NUL" in reason
    touched = query(runtime, "SELECT DISTINCT lead_key FROM lead_touchpoints")
    assert target not in {r[0] for r in touched} and len(touched) > 1

    monkeypatch.undo()
    assert rebuild(runtime.app, runtime.db, "touchpoints", batch_size=200).parked == 0
    assert parked(runtime) == []
    assert snapshot(runtime) == clean


def test_a_write_failure_in_a_batch_parks_only_the_offender_in_its_projection(
    runtime: Runtime, journeys: tuple[list[Any], list[Any], str]
) -> None:
    """One batch for everything: the database rejects one lead's lead_state row; the batch is
    written again aggregate by aggregate, so the other leads, and the lead's rows of the other
    projections, commit with the position."""
    first, rest, target = journeys
    inject("check", runtime, target, pytest.MonkeyPatch())
    runtime.app.ingest(first + rest)
    runtime.projector.batch_size = 100_000
    assert runtime.projector.run() == runtime.app.recorder.max_notification_id()
    assert [p[0] for p in parked(runtime)] == ["leads"]
    for table in ("lead_touchpoints", "lead_scores"):
        keys = {r[0] for r in query(runtime, f"SELECT DISTINCT lead_key FROM {table}")}
        assert (target in keys) == (table != "lead_scores"), table
    leads = {e.subject for e in first + rest if e.is_lead_event}
    assert {r[0] for r in query(runtime, "SELECT lead_key FROM lead_state")} == leads - {target}


def test_forget_shows_a_parked_lead_by_its_pseudonym(
    runtime: Runtime,
    journeys: tuple[list[Any], list[Any], str],
    monkeypatch: pytest.MonkeyPatch,
    leadengine: Any,
) -> None:
    """A parked lead's key is personal data too: after `forget` the parked row names the
    pseudonym (the projector skips the lead's Erased event, so forget rewrites it)."""
    first, _rest, target = journeys
    inject("check", runtime, target, monkeypatch)
    runtime.app.ingest(first)
    runtime.projector.run()
    assert [p[2] for p in parked(runtime)] == [target]
    code, out = leadengine("forget", target, "--reason", "ticket 9", "--format", "json")
    assert code == 0, out
    shown = json.loads(out)["key"]
    assert shown.startswith("erased-") and [p[2] for p in parked(runtime)] == [shown]


@pytest.fixture(autouse=True)
def _reset_gauge() -> Iterator[None]:
    yield
    from engine import metrics

    for name in PROJECTIONS:
        metrics.parked_leads.labels(projection=name).set(0)


def test_migration_5_adds_the_parked_table_to_a_schema_made_before_it(
    runtime: Runtime, leadengine: Any
) -> None:
    from engine.domain.errors import LeadEngineError
    from engine.postgres import migrations
    from engine.runtime import open_runtime

    runtime.app.ingest([validate_event(e) for e in generate(5, seed=3)])
    with runtime.db.connect() as conn:  # as the previous version left it
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE version = 5").format(
                sql.Identifier(runtime.db.schema, migrations.TABLE)
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(runtime.db.schema, "parked")))
    with (
        pytest.raises(LeadEngineError, match=r"db migrate.*5 parked leads"),
        open_runtime(runtime.settings, rules=runtime.rules, database=runtime.db),
    ):
        pass
    code, out = leadengine("db", "migrate")
    assert code == 0 and "applied 5 parked leads" in out
    code, out = leadengine("db", "migrate")  # idempotent
    assert code == 0 and "applied nothing" in out
    code, out = leadengine("project", "--format", "json")
    assert code == 0 and parked(runtime) == []
