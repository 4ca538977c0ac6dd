"""Identity stitching over a real PostgreSQL: the identity decisions are projected
(`identity_links`), `lead_current.person_id` names the person, reports count people, `--as-of`
before a merge shows two leads and after it one, an unmerge gives back the reports of a run
without the merge, and `forget` on an alias forgets the whole person."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.analytics.attribution import attribute
from engine.analytics.funnel import snapshot
from engine.analytics.load import load
from engine.analytics.paths import build_paths
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.projections.identity import people_sql
from engine.projections.rebuild import rebuild
from engine.readmodel import read_schema
from engine.runtime import Runtime
from engine.stitching.identity_map import KINDS, IdentityMap, Link
from tests.unit.test_stitching import anonymous_journey, duplicate, link, merged, unmerged


def project(rt: Runtime) -> None:
    rt.projector.run(until_caught_up=True)


def current(rt: Runtime) -> dict[str, tuple[Any, Any]]:
    """lead_key -> (lead_id, person_id), as the read contract shows them."""
    view = sql.Identifier(read_schema(rt.db.schema), "lead_current")
    with rt.db.connect() as conn:
        rows = conn.execute(sql.SQL("SELECT lead_key, lead_id, person_id FROM {}").format(view))
        return {key: (lead_id, person) for key, lead_id, person in rows}


def links(rt: Runtime) -> list[tuple[Any, ...]]:
    view = sql.Identifier(read_schema(rt.db.schema), "identity_links")
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL(
                "SELECT lead_key, kind, other_lead_key, by, reason, person_id FROM {} "
                "ORDER BY occurred_at"
            ).format(view)
        ).fetchall()


def funnel(rt: Runtime, as_of: datetime | None = None) -> dict[str, Any]:
    return snapshot(load(rt.db, as_of))


def test_links_and_merges_make_people_in_the_read_model(runtime: Runtime) -> None:
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate()])
    project(runtime)
    before_merge = runtime.app.get_lead("ada-2").modified_on
    runtime.app.ingest([merged()])
    project(runtime)
    rows = current(runtime)
    ada = rows["ada"][0]
    assert {key: person for key, (_, person) in rows.items()} == {
        "ada": ada,
        "ada-2": ada,
        "cookie-1": ada,
    }
    assert [(k, kind, other, by) for k, kind, other, by, _why, _p in links(runtime)] == [
        ("cookie-1", "linked", "ada", None),
        ("ada-2", "merged", "ada", "crm-admin"),
    ]
    assert all(person == ada for *_, person in links(runtime))
    now, then = funnel(runtime), funnel(runtime, as_of=before_merge)
    assert now["leads_total"] == 1  # one person: the cookie, Ada and her duplicate
    assert then["leads_total"] == 2  # before the merge: Ada (with her cookie), the duplicate
    stages = {s["stage"]: s for s in now["stages"]}
    assert stages["sal"]["reached"] == 1 and stages["sal"]["now"] == 1  # the furthest lead
    kpi = sql.Identifier(read_schema(runtime.db.schema), "kpi_funnel")
    with runtime.db.connect() as conn:
        reached = dict(conn.execute(sql.SQL("SELECT stage, reached FROM {}").format(kpi)))
    assert (reached["lead"], reached["sal"]) == (1, 1)  # people, as the CLI counts them


def test_first_touch_attribution_credits_the_pre_capture_ad_click(runtime: Runtime) -> None:
    runtime.app.ingest([*anonymous_journey(), link()])
    project(runtime)
    cfg = runtime.rules.attribution
    paths = build_paths(load(runtime.db), cfg, conversion="lead")
    credits = attribute(paths, "first_touch", "channel", cfg)
    assert {row["channel"]: row["credit"] for row in credits.rows() if row["credit"]} == {
        "paid_search": 1
    }


def test_unmerge_gives_back_the_reports_of_a_run_without_the_merge(
    runtime: Runtime,
) -> None:
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate()])
    project(runtime)
    without = funnel(runtime)
    runtime.app.ingest([merged()])
    project(runtime)
    assert funnel(runtime) != without
    runtime.app.ingest([unmerged()])
    project(runtime)
    assert funnel(runtime) == without
    rows = current(runtime)
    assert rows["ada-2"][1] == rows["ada-2"][0]  # a person of its own again
    assert rows["cookie-1"][1] == rows["ada"][0]  # the link stays


def test_forget_on_the_alias_forgets_every_key_of_the_person(runtime: Runtime) -> None:
    runtime.app.ingest([*anonymous_journey(), link(), *duplicate(), merged()])
    project(runtime)
    at = runtime.app.get_lead("ada").modified_on
    result = runtime.app.forget("cookie-1", reason="ticket 9", by="dpo", at=at)
    assert len(result.members) == 2
    project(runtime)
    rows = current(runtime)
    assert all(key.startswith("erased-") for key in rows) and len(rows) == 3
    assert len({person for _, person in rows.values()}) == 1  # still one person
    view = sql.Identifier(read_schema(runtime.db.schema), "identity_links")
    with runtime.db.connect() as conn:
        text = str(conn.execute(sql.SQL("SELECT * FROM {}").format(view)).fetchall())
    # no key left: ids and pseudonyms are hex, which may hold the letters "ada" by chance
    text = re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "<id>", text)
    assert "ada" not in re.sub(r"erased-[0-9a-f]+", "<pseudonym>", text)


def people_rows(rt: Runtime) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL("SELECT lead_id, person_id, leads FROM {} ORDER BY lead_id").format(
                sql.Identifier(rt.db.schema, "lead_person")
            )
        ).fetchall()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_rebuild_of_history_gives_the_same_people(runtime: Runtime, workers: int) -> None:
    """Generated identity stories: the people the projector made batch by batch are the ones
    a rebuild (one worker or parts side by side) makes, and the ones engine/stitching folds."""
    events = [validate_event(e) for e in generate(120, seed=4, identity=0.5)]
    for start in range(0, len(events), 97):  # many batches, links among them
        runtime.app.ingest(events[start : start + 97])
        project(runtime)
    before = people_rows(runtime)
    folded = runtime.app.identity_map()
    assert before and {(lead, person) for lead, person, _ in before} == {
        (lead, person) for person, leads in folded.people().items() for lead in leads
    }
    rebuild(runtime.app, runtime.db, "history", batch_size=200, workers=workers)
    assert people_rows(runtime) == before


LEADS = [UUID(int=i) for i in range(1, 7)]
T0 = datetime(2026, 3, 1, tzinfo=UTC)
links_strategy = st.lists(
    st.builds(
        Link,
        kind=st.sampled_from(KINDS),
        lead_id=st.sampled_from(LEADS),
        other_id=st.sampled_from(LEADS),
        occurred_at=st.integers(0, 5).map(lambda h: T0 + timedelta(hours=h)),
        source=st.sampled_from(["crm", "web"]),
        event_id=st.integers(0, 9999).map(str),
        subject_wins=st.booleans(),
    ).filter(lambda link: link.lead_id != link.other_id),
    max_size=12,
    unique_by=lambda link: (link.lead_id, link.source, link.event_id),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(links_strategy)
def test_the_read_models_people_are_the_identity_maps(runtime: Runtime, drawn: list[Link]) -> None:
    """Any links, merges and unmerges (cycles, two winners, an unmerge before its merge): the
    SQL fold behind lead_person and `report identity` gives the people IdentityMap gives."""
    table = sql.Identifier(runtime.db.schema, "identity_links")
    with runtime.db.connect() as conn, conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        for n, link in enumerate(drawn):
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (lead_id, source, event_id, kind, other_id, occurred_at, "
                    "recorded_at, position, subject_wins) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(table),
                (link.lead_id, link.source, link.event_id, link.kind, link.other_id,
                 link.occurred_at, link.occurred_at, n, link.subject_wins),
            )  # fmt: skip
        rows = conn.execute(people_sql(runtime.db.schema, None)).fetchall()
    folded = IdentityMap(drawn)
    assert {(lead, person, n) for lead, person, n in rows} == {
        (lead, person, len(members))
        for person, members in folded.people().items()
        for lead in members
    }
