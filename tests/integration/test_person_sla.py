"""One person, one SLA clock over a real PostgreSQL (docs/identity.md): the routed key's
`lead_sla` / `lead_sla_rounds` rows, `report sla` and `lead explain` stop on a call or decision
logged on an alias of the person, before and after the link reached the read model; an unmerge
gives back the rows of a run without the link; `projections rebuild leads` (one process or parts
side by side) makes the rows the projector made batch by batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from engine.analytics import queries
from engine.domain.contract import validate_event
from engine.projections import rows as row_functions
from engine.projections.rebuild import rebuild
from engine.runtime import Runtime
from engine.stitching.person import sla_facts
from tests.factory import raw

MON = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, inside the shipped business hours
CALL = {"rep": "ana.ramos", "channel": "sales", "direction": "outbound", "outcome": "connected"}


def qualifying(key: str, at: datetime = MON) -> list[dict[str, Any]]:
    """MQL and routed at `at` under the shipped rules (first touch due 4 business hours on)."""
    profile = {"industry": "software", "employees": 5000, "seniority": "vp"}
    out = [
        raw("lead.captured", key, {"email": f"{key}@acme.example", "country": "US"}, at=at),
        raw("lead.profile_updated", key, profile, at=at),
    ]
    for kind in ("touch.form_submitted", "touch.webinar_attended", "touch.content_downloaded"):
        out.append(raw(kind, key, {"channel": "webinar"}, at=at))
    return out


def ingest(rt: Runtime, *events: dict[str, Any]) -> None:
    rt.app.ingest([validate_event(e) for e in events])
    rt.projector.run(until_caught_up=True)


def table(rt: Runtime, name: str) -> list[tuple[Any, ...]]:
    with rt.db.connect() as conn:
        return conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 3").format(sql.Identifier(rt.db.schema, name))
        ).fetchall()


def sla_of(rt: Runtime, key: str) -> dict[str, Any]:
    with rt.db.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT first_touch_at, decided_at FROM {} WHERE lead_key = %s").format(
                sql.Identifier(rt.db.schema, "lead_sla")
            ),
            (key,),
        )
        sla = cur.fetchone()
        rounds = conn.execute(
            sql.SQL(
                "SELECT first_touch_at, decided_at FROM {} WHERE lead_key = %s ORDER BY round"
            ).format(sql.Identifier(rt.db.schema, "lead_sla_rounds")),
            (key,),
        ).fetchall()
    assert sla is not None and rounds[-1] == sla
    return {"first_touch_at": sla[0], "decided_at": sla[1]}


def report(rt: Runtime, as_of: datetime, clock: str | None = None) -> dict[str, Any]:
    assert rt.rules.sla is not None
    doc = queries.sla(rt.db, rt.rules.sla, as_of, clock=clock)
    (owner,) = doc["by_owner"]
    return owner


def both(rt: Runtime) -> list[list[tuple[Any, ...]]]:
    return [table(rt, "lead_sla"), table(rt, "lead_sla_rounds")]


@pytest.mark.parametrize("workers", [1, 2])
def test_the_routed_keys_sla_stops_on_a_call_logged_on_its_alias(
    runtime: Runtime, leadengine: Any, workers: int
) -> None:
    rt = runtime
    call = raw("touch.call_logged", "ada-cell", CALL, at=MON + timedelta(hours=1))
    alias = raw("lead.captured", "ada-cell", {"email": "c@acme.example"})
    ingest(rt, *qualifying("ada"), alias, call)
    without = both(rt)
    assert sla_of(rt, "ada") == {"first_touch_at": None, "decided_at": None}  # two people
    later = MON + timedelta(hours=5)
    assert report(rt, later)["first_touch_breached"] == 1
    before_link = datetime.now(UTC)

    # the link arrives: on the alias's stream (the routed lead gets no event of its own)
    ingest(rt, raw("identity.linked", "ada-cell", {"to": "ada"}, at=MON + timedelta(hours=3)))
    assert sla_of(rt, "ada") == {"first_touch_at": MON + timedelta(hours=1), "decided_at": None}
    assert report(rt, later)["first_touch_met"] == 1
    # --as-of before the link: two people, two clocks
    assert report(rt, before_link, "recorded")["first_touch_breached"] == 1

    # a decision on the alias after the link (dated before it): the person's decision
    accepted = raw("sales.accepted", "ada-cell", {"rep": "ana.ramos"}, at=MON + timedelta(hours=2))
    ingest(rt, accepted)
    assert sla_of(rt, "ada") == {
        "first_touch_at": MON + timedelta(hours=1),
        "decided_at": MON + timedelta(hours=2),
    }
    assert report(rt, later)["decision_met"] == 1
    code, out = leadengine("lead", "explain", "ada", "--format", "json")
    assert code == 0 and json.loads(out)["sla"]["decision"]["status"] == "met"
    linked = both(rt)
    rebuild(rt.app, rt.db, "leads", batch_size=7, workers=workers)
    assert both(rt) == linked  # a rebuild makes the rows the batches made
    after_link = datetime.now(UTC)

    # the link undone: the rows of a run without it
    undo = {"winner": "ada", "by": "crm-admin", "reason": "another person"}
    ingest(rt, raw("lead.unmerged", "ada-cell", undo, at=MON + timedelta(hours=6)))
    assert both(rt) == without
    assert report(rt, later)["first_touch_breached"] == 1
    rebuild(rt.app, rt.db, "leads", batch_size=7, workers=workers)
    assert both(rt) == without
    code, out = leadengine("lead", "explain", "ada", "--format", "json")
    assert code == 0 and json.loads(out)["sla"]["first_touch"]["done_at"] is None
    code, out = leadengine(
        "lead", "explain", "ada", "--as-of", after_link.isoformat(), "--format", "json"
    )
    assert code == 0 and json.loads(out)["sla"]["first_touch"]["status"] == "met", out


def test_a_merge_into_the_routed_winner_stops_its_clock(runtime: Runtime) -> None:
    """The merge is on the loser's stream; the loser's call is the winner's first touch, and
    a later call on the loser moves nothing (the earliest counts)."""
    rt = runtime
    loser = raw("lead.captured", "ada-2", {"email": "a2@acme.example"}, at=MON)
    ingest(rt, *qualifying("ada"), loser)
    ingest(rt, raw("touch.call_logged", "ada-2", CALL, at=MON + timedelta(hours=2)))
    merge = {"winner": "ada", "by": "crm-admin", "reason": "same person"}
    ingest(rt, raw("lead.merged", "ada-2", merge, at=MON + timedelta(hours=4)))
    assert sla_of(rt, "ada")["first_touch_at"] == MON + timedelta(hours=2)
    ingest(rt, raw("touch.call_logged", "ada-2", CALL, at=MON + timedelta(hours=1)))
    assert sla_of(rt, "ada")["first_touch_at"] == MON + timedelta(hours=1)  # late, earlier


# -- property: batch by batch == rebuild == one lead holding the union -------------------------

KEYS = ("p", "p-cell", "p-2")
SALES = ("touch.call_logged", "touch.email_sent", "sales.accepted", "touch.page_viewed")


def sales(key: str, kind: str, h: int, n: str) -> dict[str, Any]:
    data: dict[str, Any] = {"channel": "sales", "rep": "ana.ramos"}
    if kind == "touch.call_logged":
        data = CALL
    elif kind.startswith("sales."):
        data = {"rep": "ana.ramos"}
    elif kind == "touch.page_viewed":
        data = {"channel": "web", "url": "/pricing"}
    return raw(kind, key, data, at=MON + timedelta(hours=h), id=n)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    facts=st.lists(
        st.tuples(st.sampled_from(KEYS), st.sampled_from(SALES), st.integers(-2, 30)),
        max_size=8,
    ),
    joins=st.lists(
        st.tuples(
            st.sampled_from([("p-cell", "p"), ("p-2", "p"), ("p-2", "p-cell")]),
            st.integers(0, 8),
            st.booleans(),
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda j: j[0],
    ),
    cuts=st.sets(st.integers(1, 14), max_size=4),
)
def test_batches_rebuild_and_one_lead_holding_the_union_agree(
    runtime: Runtime, facts: list[tuple[str, str, int]], joins: list[Any], cuts: set[int]
) -> None:
    """Sales facts over three keys of one person in any order, links (some undone) among them,
    projected in batches cut anywhere: the routed key's rows are the ones `sla_row` makes for
    one lead holding the facts of the keys still joined to it, and a rebuild makes them too."""
    rt = runtime
    tag = f"{len(table(rt, 'lead_sla'))}-"  # examples share the schema: keys of their own
    key = {k: tag + k for k in KEYS}
    stream: list[dict[str, Any]] = [
        sales(key[k], kind, h, f"{tag}f{i}") for i, (k, kind, h) in enumerate(facts)
    ]
    for i, ((subject, to), at, undone) in enumerate(joins):
        where = min(at, len(stream))
        body = {"to": key[to]}
        stream.insert(where, raw("identity.linked", key[subject], body, id=f"{tag}j{i}",
                                 at=MON + timedelta(minutes=i)))  # fmt: skip
        if undone:
            gone = {"winner": key[to], "by": "crm", "reason": "no"}
            stream.append(raw("lead.unmerged", key[subject], gone, id=f"{tag}u{i}",
                              at=MON + timedelta(hours=1, minutes=i)))  # fmt: skip
    head = [
        raw("lead.captured", key[k], {"email": f"{key[k]}@x.example"}, at=MON) for k in KEYS[1:]
    ]
    ingest(rt, *qualifying(key["p"]), *head)
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(stream)), len(stream)]:
        ingest(rt, *stream[start:cut])
        start = cut
    routed = rt.app.get_lead(key["p"])
    members = rt.app.person_members(routed.id)
    assert rt.rules.sla is not None
    expected = row_functions.sla_row(routed, rt.rules.sla, sla_facts(routed, members))
    with rt.db.connect() as conn:
        got = conn.execute(
            sql.SQL("SELECT * FROM {} WHERE lead_id = %s").format(
                sql.Identifier(rt.db.schema, "lead_sla")
            ),
            (routed.id,),
        ).fetchone()
    assert got == expected
    batches = both(rt)
    rebuild(rt.app, rt.db, "leads", batch_size=5)
    assert both(rt) == batches
