"""Writers of a contended routing queue take turns: while one batch holds the queue (it read
it under the queue's advisory lock), another process's save that writes the queue waits."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.aggregates.account import account_id
from engine.aggregates.routing import queue_id
from engine.domain.accounts.matching import MemberDecision
from engine.domain.contract import validate_event
from engine.domain.rules import load_rules
from engine.postgres import db as dbmod
from engine.runtime import Runtime, open_runtime
from engine.settings import Settings
from tests.factory import ev, raw
from tests.integration.test_routing_concurrency import RULES


def test_a_save_writing_a_held_queue_waits_for_the_holder(
    settings: Settings, database: dbmod.Database, tmp_path: Path
) -> None:
    path = tmp_path / "race.yaml"
    path.write_text(RULES)
    rules = load_rules(path)
    batch = [
        ev("lead.captured", "held-1", {"email": "held-1@acme.com"}),
        ev("touch.form_submitted", "held-1", {"channel": "web"}),
    ]
    with (
        open_runtime(settings, rules=rules, database=database) as holder,
        open_runtime(settings, rules=rules, database=database) as writer,
    ):
        assert holder.app.locks is not None
        queue = queue_id("one")
        holder.app.locks.contended([queue])
        holder.app.locks.before_read(queue)  # as a batch that read the contended queue
        done = threading.Event()

        def write() -> None:
            writer.app.ingest(batch)
            done.set()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        try:
            assert not done.wait(1.5), "the save did not wait for the queue's holder"
            assert list(writer.app.recorder.select_events(writer.app.lead_id("held-1"))) == []
        finally:
            holder.app.locks.release()
        assert done.wait(30)
        thread.join(5)
        lead = writer.app.get_lead("held-1")
        assert lead.owner == "ana" and lead.queue == "one"
        assert not holder.app.locks.is_contended(queue_id("other"))


def _member(account: str) -> MemberDecision:
    return MemberDecision(
        account=account,
        lead_id=str(uuid.uuid4()),
        joined=True,
        rule="domain",
        reason="acme.com",
        candidates=(account,),
        rules_version="test",
        decided_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


def _waiting_on_advisory_lock(rt: Runtime) -> bool:
    with rt.db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ).fetchone()
    return bool(row and row[0])


def test_the_projector_waits_for_a_batch_writing_its_account(
    runtime: Runtime, settings: Settings
) -> None:
    """A settle that records a decision on an account while a consumer's batch is writing the
    same account waits for that batch to commit (the account's lock, taken by the batch before
    it read the account), so the batch's save does not lose the race and redo the batch; then
    the settle records its decision on top. Without the lock, the settle commits first and
    the batch's save fails on the account's version."""
    batch = [validate_event(raw("account.updated", "a1", {"name": "Acme Inc."}, days=0))]
    runtime.app.ingest(batch)
    with open_runtime(settings, rules=runtime.rules, database=runtime.db) as projector:
        settled = threading.Event()

        def settle() -> None:
            projector.app.record_account_decisions([], [_member("a1")])
            settled.set()

        thread = threading.Thread(target=settle, daemon=True)
        save = runtime.app._save

        def save_after_the_settle_began(*args: Any, **kwargs: Any) -> None:
            thread.start()  # the batch has read and decided on a1; its save comes next
            deadline = time.monotonic() + 30
            while not settled.is_set() and not _waiting_on_advisory_lock(runtime):
                assert time.monotonic() < deadline, "the settle neither waited nor finished"
                time.sleep(0.05)
            save(*args, **kwargs)

        runtime.app._save = save_after_the_settle_began  # type: ignore[method-assign]
        try:
            # one try, as the consumer's first attempt (`store_racing` would redo a lost one)
            runtime.app.ingest([validate_event(raw("account.updated", "a1", {"tier": 2}, days=1))])
        finally:
            runtime.app._save = save  # type: ignore[method-assign]
        assert settled.wait(30)
        thread.join(5)
    topics = [e.topic for e in runtime.app.recorder.select_events(account_id("a1"))]
    assert [t.rsplit(".", 1)[-1] for t in topics] == [
        "Started",
        "Updated",
        "Updated",
        "MemberDecided",
    ]
