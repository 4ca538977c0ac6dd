"""A lead as the engine had it at a moment, on the lean fold: `lead show --as-of` without
building an eventsourcing event object for every stored fact.

One query reads the lead's rows (version, topic, state) as plain tuples. A row recorded after
the moment is dropped on its recorded time alone (read off the start of its JSON, where the
transcoder writes `timestamp`). A plain fact (no sealed personal data, no kept unknown fields,
no other typed value than its two moments) is decoded with `json.loads` and applied to the
lean lead (engine/domain/fold.py) directly; every other row (the start, decisions, sealed
facts) goes through the application's mapper, exactly as `lead_events` decodes it, and is
applied by its own event class. The result reads as `asof.fold(asof.recorded_by(...))`
(tests/integration/test_asof_lean.py proves it).

With snapshots (engine/postgres/snapshots.py) the fold starts from the newest state whose
events were all recorded by the moment and reads only the rows after it, the blocks, the state
and the rows in one round trip (a lead with no snapshot pays none more than without); the
result is the same (tests/integration/test_asof_snapshots.py).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import sql
from psycopg.rows import tuple_row

from engine.aggregates.lead import Lead
from engine.domain.errors import LeadEngineError, LeadNotFound, echoed
from engine.domain.facts import Fact
from engine.domain.fold import EPOCH, LeanLead
from engine.domain.rules import ScoringModel
from engine.domain.scorestate import ScoreState
from engine.domain.scoring import Score, clamp
from engine.domain.shown import Shown
from engine.postgres.snapshots import BLOCK, Block, SnapshotStore, dumps
from engine.postgres.store import datastore_of
from engine.services.asof_lazy import PackedFacts, PackedFirsts, PackedSeen

_FACT_TOPIC = "engine.aggregates.lead:Lead.FactRecorded"
_STAMP = b'{"timestamp":{"_type_":"datetime_iso","_data_":"'
_TYPED = b'"_type_"'
_SLOW = (b'"_pii"', b'"extra"')  # sealed personal data, kept unknown fields: the mapper opens
#: how near (in hundredths) a tie of round(x, 2) the running engagement may be and be kept: the
#: running and the full sums differ by float rounding, far below 1e-6 of a point
_TIE = 1e-4


class AsOfLead(LeanLead):
    """A lean lead with the aggregate's other state (routing, SLA alerts, identity links), so
    stored decisions of every kind apply to it as to a `Lead`."""

    def __init__(self, lead_id: UUID) -> None:
        super().__init__("")
        self.id = lead_id
        self.version = 0
        self.queue: str | None = None
        self.routings: list[tuple[datetime, str, str]] = []
        self.routed: list[Any] = []  # every routing decision, as `Lead.routed`
        self.routing_failure: str | None = None
        self.sla_alerts: set[tuple[datetime, str, str]] = set()
        self.links: list[Any] = []
        self.created_on: datetime | None = None
        self.scored: dict[str, tuple[datetime | None, ScoreState]] = {}
        self.shown = Shown()  # what `lead show` prints of the facts (engine/domain/shown.py)

    def _apply_fact(self, *fields: Any, **named: Any) -> None:  # and `shown` kept
        super()._apply_fact(*fields, **named)
        self.shown.add(self.facts[-1])

    def _apply_erased(self, at: datetime, key: str) -> None:
        super()._apply_erased(at, key)
        self.shown = Shown.of(self.facts)  # the facts were replaced (personal data stripped)

    def __getstate__(self) -> dict[str, Any]:
        """The lead as a snapshot keeps it: the facts and the two indexes over them packed
        (engine/services/asof_lazy.py), opened only when something reads them."""
        state = dict(self.__dict__)
        facts = state["facts"] = PackedFacts.pack(self.facts, dumps)
        state["seen"] = PackedSeen.pack(self.seen, dumps)
        walked = state["walked"] = copy.copy(self.walked)
        triggers = {q.trigger for q in walked._quals} | {s.trigger for _v, s in self.path}
        triggers.update(s.trigger for s in walked.steps)
        walked.firsts = cast(dict[str, Fact], PackedFirsts.pack(walked.firsts, facts, triggers))
        return state

    def current_score(
        self, rules: ScoringModel, as_of: datetime | None = None, *, explain: bool = True
    ) -> Score:
        """As `Lead.current_score` (a lead with no dated fact is scored at its start). The
        totals alone, at the lead's clock or later (decayed to then), come from a running score
        kept with the lead (and its snapshots): O(facts since), and exactly the full
        recomputation's (tests/property/test_incremental_scoring.py)."""
        when = as_of or self.clock or self.created_on or EPOCH
        if explain or self.clock is None or when < self.clock:
            return self.score_at(rules, when, explain=explain)
        return self._totals(rules, when)

    def running_score(self, model: ScoringModel) -> ScoreState:
        """The lead's running score under `model`, fed every fact (a new one after `forget`:
        the facts were replaced, or when the model changed)."""
        kept = self.scored.get(model.ref)
        if kept is None or kept[0] != self.erased_at or kept[1].model != model:
            kept = self.scored[model.ref] = (self.erased_at, ScoreState(model))
        kept[1].feed(self.facts)
        return kept[1]

    def _totals(self, model: ScoringModel, when: datetime) -> Score:
        """`score_at(model, when, explain=False)` from the running score (engine/domain/
        scorestate.py), which matches the full sum up to float rounding: where that could move
        the rounded engagement (a raw value near a tie of `round(x, 2)`), the full one."""
        state = self.running_score(model)
        raw = state.engagement(when, raw=True)
        if abs((raw * 100) % 1 - 0.5) < _TIE:
            return self.score_at(model, when, explain=False)
        engagement = round(clamp(raw), 2)
        combine = model.combine
        total = round(state.fit * combine.fit_weight + engagement * combine.engagement_weight, 2)
        return Score(model.ref, when, state.fit, engagement, total, ())


def lead_as_of(
    app: Any, key: str | UUID, moment: datetime, *, snapshots: bool = True, block: int = BLOCK
) -> AsOfLead:
    """The lead `key` (or lead id) from the events the engine had recorded by `moment` (see
    the module docstring). Raises `LeadNotFound` for an unknown key, `LeadEngineError` when
    it had no facts by then (as `lead show --as-of` says it). With `snapshots`, starts from
    the newest snapshot recorded by `moment` and may write one (engine/postgres/snapshots.py)."""
    lead_id: UUID = key if isinstance(key, UUID) else app.lead_id(key)
    key = str(key)
    mapper = app.mapper
    plain = getattr(mapper, "compressor", None) is None and getattr(mapper, "cipher", None) is None
    store = _store(app, block) if snapshots and plain else None
    if store is None:
        return _fold(app, lead_id, key, moment, None, None, plain)
    with store.session() as conn:
        return _fold(app, lead_id, key, moment, store, conn, plain)


def _fold(
    app: Any,
    lead_id: UUID,
    key: str,
    moment: datetime,
    store: SnapshotStore | None,
    conn: Any,
    plain: bool,
) -> AsOfLead:
    """`lead_as_of` on one connection (`conn`; None: the recorder's own)."""
    mapper = app.mapper
    blocks: list[Block] = []
    lead, start = AsOfLead(lead_id), 0
    rows: list[tuple[int, str, bytes]] | None = None
    found = store.read(lead_id, moment, _events_table(app)) if store is not None else None
    if store is not None and found is not None:  # one round trip: blocks, state and rows
        blocks, rows = found.blocks, found.rows
        if found.sealed is not None:
            loaded = store.open(lead_id, found.version, found.sealed)
            if isinstance(loaded, AsOfLead):
                lead, start = loaded, found.version
            else:
                rows = None  # not to be opened (no key, damaged): every row, from the start
    indexed = blocks[-1].version if blocks else 0
    if rows is None:
        upto = max(
            (b.version for b in blocks if b.version > start and b.block_min <= moment),
            default=0,
        )
        rows = _rows(app, lead_id, conn, after=start, upto=max(upto, start), indexed=indexed)
    if not rows and not blocks:  # blocks: the lead has events (none read by `moment`)
        raise LeadNotFound(key)
    plan = _Plan.of(rows, blocks, start, moment, store.block) if store is not None else None
    captured: bytes | None = None
    for version, topic, state in rows:
        at = _recorded(state) if plain else None
        if at is not None and at > moment:
            continue
        if plain and _is_plain_fact(topic, state):
            doc = json.loads(state.decode())  # str: no encoding sniffed per row
            if datetime.fromisoformat(doc["timestamp"]["_data_"]) > moment:
                continue
            lead.version = version
            lead._apply_fact(
                doc["event_id"],
                doc["event_type"],
                doc["source"],
                datetime.fromisoformat(doc["occurred_at"]["_data_"]),
                doc["data"],
                None,
            )
        else:
            event = mapper.to_domain_event(StoredEvent(lead_id, version, topic, state))
            if event.timestamp > moment:
                continue
            lead.version = version
            _apply(lead, event)
        if plan is not None and version == plan.capture:
            for model in app.rules.all_models():  # the snapshot keeps their running scores
                lead.running_score(model)
            captured = dumps(lead)
    if not lead.facts:
        raise LeadEngineError(f"lead {echoed(key)} was not known at {moment.isoformat()}")
    if store is not None and plan is not None and (plan.blocks or captured is not None):
        store.save(lead_id, plan.blocks, None if captured is None else (plan.capture, captured))
    return lead


def _apply(lead: AsOfLead, event: Any) -> None:
    """A decoded stored event applied as the aggregate applies it."""
    if isinstance(event, Lead.Started):
        lead.key = event.key
        lead.created_on = event.timestamp
    elif isinstance(event, Lead.AnomalyFlagged):
        lead.anomalies += 1
    else:
        type(event).apply(event, cast(Lead, lead))


def _store(app: Any, block: int) -> SnapshotStore | None:
    """The application's snapshot store; None for the in-memory store or one without keys."""
    datastore = datastore_of(app.recorder)
    keys = getattr(app, "keys", None)
    if datastore is None or keys is None:
        return None
    return SnapshotStore(datastore, keys, block)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a read adds to the snapshots: the blocks its rows complete (version, block_min,
    prefix_max), and the version to capture the lead at (0: none), the last block end the read
    folds every event of (a snapshot must be the fold of versions 1..its version)."""

    blocks: list[tuple[int, datetime, datetime]]
    capture: int

    @classmethod
    def of(
        cls,
        rows: list[tuple[int, str, bytes]],
        known: list[Block],
        start: int,
        moment: datetime,
        block: int,
    ) -> _Plan:
        stamps = [_recorded(state) for _v, _t, state in rows]
        if any(at is None for at in stamps):
            return cls([], 0)  # rows not as the transcoder writes them: write nothing
        times = cast(list[datetime], stamps)
        indexed = known[-1].version if known else 0
        most = known[-1].prefix_max if known else None
        added: list[tuple[int, datetime, datetime]] = []
        tail = [(v, at) for (v, _t, _s), at in zip(rows, times, strict=True) if v > indexed]
        for n in range(len(tail) // block):
            part = tail[n * block : (n + 1) * block]
            high = max(at for _v, at in part)
            most = high if most is None else max(most, high)
            added.append((part[-1][0], min(at for _v, at in part), most))
        folded = start  # the last version of the unbroken run of events recorded by `moment`
        for (version, _t, _s), at in zip(rows, times, strict=True):
            if version != folded + 1 or at > moment:
                break
            folded = version
        capture = folded - folded % block
        ends = {b.version for b in known if not b.has_state} | {v for v, _lo, _hi in added}
        return cls(added, capture if capture > start and capture in ends else 0)


def _is_plain_fact(topic: str, state: bytes) -> bool:
    """A fact with no sealed data, no kept unknown fields, no typed value but its moments."""
    if topic != _FACT_TOPIC or state.count(_TYPED) != 2:
        return False
    return not any(mark in state for mark in _SLOW)


def _recorded(state: bytes) -> datetime | None:
    """The recorded time at the start of a stored state, if it starts as the transcoder
    writes it (else None: the caller decodes the row to know)."""
    if not state.startswith(_STAMP):
        return None
    end = state.find(b'"', len(_STAMP))
    try:
        return datetime.fromisoformat(state[len(_STAMP) : end].decode())
    except ValueError:
        return None


def _events_table(app: Any) -> sql.Composed:
    """The application's events table, schema-qualified (PostgreSQL only)."""
    datastore = datastore_of(app.recorder)
    assert datastore is not None  # a snapshot store is made only for one
    return sql.SQL("{}.{}").format(
        sql.Identifier(datastore.schema), sql.Identifier(app.recorder.events_table_name)
    )


def _rows(
    app: Any, lead_id: UUID, conn: Any, *, after: int, upto: int, indexed: int
) -> list[tuple[int, str, bytes]]:
    """The lead's stored rows after version `after` up to `upto` and after `indexed`, in
    version order, one query (the in-memory store: its records)."""
    recorder = app.recorder
    datastore = datastore_of(recorder)
    if datastore is None:
        return [
            (e.originator_version, e.topic, bytes(e.state))
            for e in recorder.select_events(lead_id)
            if e.originator_version > after
            and (e.originator_version <= upto or e.originator_version > indexed)
        ]
    statement = sql.SQL(
        "SELECT originator_version, topic, state FROM {}.{} WHERE originator_id = %s "
        "AND originator_version > %s AND (originator_version <= %s OR originator_version > %s) "
        "ORDER BY originator_version"
    ).format(sql.Identifier(datastore.schema), sql.Identifier(recorder.events_table_name))
    if conn is None:
        with datastore.get_connection() as own:
            return _select(own, statement, (lead_id, after, upto, indexed))
    return _select(conn, statement, (lead_id, after, upto, indexed))


def _select(conn: Any, statement: sql.Composed, params: tuple[Any, ...]) -> list[Any]:
    with conn.cursor(row_factory=tuple_row) as curs:
        curs.execute(statement, params)
        return [(int(v), str(t), bytes(s)) for v, t, s in curs.fetchall()]
