"""SLA timers that fire: `leadengine timers` records at-risk and breached moments as they pass.

`report sla` derives timers on demand (engine/domain/sla.py); this service turns their moments into
recorded decisions (`Lead.SlaAlerted`), so sales hears of them (the relay publishes
`lead.sla_alerted`) and a replay shows when the engine warned. It keeps a heap of the next
moment per routed lead and sleeps until the earliest (or until the log moves: it follows the
notification log to learn of new routings, touches and decisions), never polling every lead.

At each moment it reads the lead, works out its SLA as of now (business hours, time zone, as
`report sla` does) and records each threshold passed with its timer still open: `at_risk` at
the at-risk share of the allowance, `breached` at the due moment. A first touch (or decision)
recorded before the moment closes the timer, even one that arrives late, dated earlier: no
alert follows it. Alerts are recorded once per routing round, timer and status (the lead
refuses a second); a version conflict with a consumer writing the same lead is retried on
fresh reads. The heap is memory only: at start the service finds the routed leads in the
outbox (`lead.routed` records; below `outbox_start`, the log's `Routed` events only), schedules
each from its events, and follows the log from its head on; it never reads the whole log.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from engine.aggregates.lead import Lead
from engine.domain.rules import Sla
from engine.domain.sla import add_business_hours
from engine.logs import get_logger
from engine.postgres.outbox import OutboxRecorder, complete_from, routed_leads
from engine.services.application import LeadEngine
from engine.stitching.person import person_sla

log = get_logger("engine.timers")
LEAD_TOPIC = "engine.aggregates.lead:Lead."
#: Lead events after which a lead's next moment may change.
WATCHED = frozenset({"Routed", "FactRecorded", "SlaAlerted", "Erased"})
ROUTED = LEAD_TOPIC + "Routed"


@dataclass(frozen=True, slots=True)
class Moment:
    """One threshold of one timer of a lead's latest routing round."""

    timer: str
    status: str  # at_risk | breached
    at: datetime
    due: datetime
    routed_at: datetime
    owner: str
    queue: str


def moments(lead: Lead, sla: Sla, now: datetime, members: Sequence[Lead] = ()) -> list[Moment]:
    """The thresholds of `lead`'s latest routing round whose timer is still open at `now` and
    that are not recorded yet, in time order (past ones first: they are due now). `members`:
    the other leads of its person, whose sales touches and decisions stop its timers too."""
    state = person_sla(lead, members, sla, now)
    if state is None:
        return []
    out = []
    for timer, allowance in (
        (state.first_touch, sla.first_touch_hours),
        (state.decision, sla.decision_hours),
    ):
        if timer.done_at is not None:
            continue  # done (in time or late): the timer is closed
        at_risk = add_business_hours(state.routed_at, sla.at_risk_after * allowance,
                                     sla.business_hours)  # fmt: skip
        for status, at in (("at_risk", at_risk), ("breached", timer.due)):
            if (state.routed_at, timer.name, status) not in lead.sla_alerts:
                out.append(
                    Moment(
                        timer.name, status, at, timer.due, state.routed_at, state.owner, state.queue
                    )
                )
    return sorted(out, key=lambda m: m.at)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimerService:
    """Follows `app`'s log and records SLA alerts as their moments pass."""

    def __init__(
        self, app: LeadEngine, sla: Sla, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.app = app
        self.sla = sla
        self.clock = clock
        self.position = 0
        self.routed: set[UUID] = set()
        self.heap: list[tuple[datetime, UUID]] = []
        self.recorded = 0

    def resume(self, limit: int = 5000) -> None:
        """Schedule every lead routed up to the log's head, found without decoding the log,
        then follow the log from the head (a restart: moments passed while the service was
        down fire at once, each once, their `at` saying when they were due)."""
        recorder = self.app.recorder
        if not isinstance(recorder, OutboxRecorder):
            return  # the in-memory store: scan() reads its log from the start
        head = recorder.max_notification_id() or 0
        with recorder.datastore.get_connection() as conn:
            found = routed_leads(conn, recorder.datastore.schema, head)
            start = complete_from(conn, recorder.datastore.schema)
        position = 0
        while position < min(head, start - 1):  # recorded before the outbox: the log's Routed
            batch = recorder.select_notifications(
                start=position + 1, limit=limit, stop=min(head, start - 1), topics=[ROUTED]
            )
            if not batch:
                break
            found.update(UUID(str(n.originator_id)) for n in batch)
            position = batch[-1].id
        self.routed |= found
        self.position = head
        for lead_id in sorted(found):
            self.schedule(lead_id)

    def scan(self, limit: int = 5000) -> int:
        """Read the log past the position; reschedule the routed leads it touched."""
        notifications = self.app.recorder.select_notifications(start=self.position + 1, limit=limit)
        touched: set[UUID] = set()
        for n in notifications:
            name = n.topic[len(LEAD_TOPIC) :] if n.topic.startswith(LEAD_TOPIC) else None
            if name not in WATCHED:
                continue
            lead_id = UUID(str(n.originator_id))
            if name == "Routed":
                self.routed.add(lead_id)
            if lead_id in self.routed:
                touched.add(lead_id)
        if notifications:
            self.position = notifications[-1].id
        for lead_id in touched:
            self.schedule(lead_id)
        return len(notifications)

    def schedule(self, lead_id: UUID) -> None:
        lead: Lead = self.app.repository.get(lead_id)
        upcoming = moments(lead, self.sla, self.clock(), self.app.person_now(lead))
        if upcoming:
            heapq.heappush(self.heap, (upcoming[0].at, lead_id))

    def fire(self) -> int:
        """Record every moment that has passed; returns how many alerts were recorded."""
        fired = 0
        while self.heap and self.heap[0][0] <= self.clock():
            _at, lead_id = heapq.heappop(self.heap)
            fired += self._record(lead_id)
            self.schedule(lead_id)
        self.recorded += fired
        return fired

    def _record(self, lead_id: UUID, attempts: int = 5) -> int:
        for _ in range(attempts):
            lead: Lead = self.app.repository.get(lead_id)
            now = self.clock()
            members = self.app.person_now(lead)
            due = [m for m in moments(lead, self.sla, now, members) if m.at <= now]
            done = sum(
                lead.alert_sla(
                    timer=m.timer,
                    status=m.status,
                    at=m.at,
                    due=m.due,
                    routed_at=m.routed_at,
                    owner=m.owner,
                    queue=m.queue,
                )
                for m in due
            )
            if not done:
                return 0
            try:
                self.app.save(lead)
            except IntegrityError:  # a consumer wrote the lead meanwhile: read it again
                continue
            for m in due:
                log.info("sla alert recorded", lead_id=str(lead_id), timer=m.timer,
                         status=m.status, at=m.at.isoformat())  # fmt: skip
            return int(done)
        raise IntegrityError(f"lead {lead_id}: lost {attempts} version races in a row")

    def run(self, stop: threading.Event, log_poll: float = 0.2) -> int:
        """Until `stop`: follow the log, fire what is due, sleep until the next moment (at most
        `log_poll`, to see new routings). Returns how many alerts were recorded."""
        caught_up = False
        if self.position == 0:
            self.resume()
        while not stop.is_set():
            while self.scan() and not stop.is_set():
                pass
            if not caught_up:
                caught_up = True
                log.info("timers caught up with the log", position=self.position,
                         scheduled=len(self.heap))  # fmt: skip
            self.fire()
            wait = log_poll
            if self.heap:
                wait = min(wait, max(0.0, (self.heap[0][0] - self.clock()).total_seconds()))
            stop.wait(wait)
        return self.recorded
