"""Writers of a contended routing queue take turns: while one batch holds the queue (it read
it under the queue's advisory lock), another process's save that writes the queue waits."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.aggregates.routing import queue_id
from engine.domain.rules import load_rules
from engine.postgres import db as dbmod
from engine.runtime import open_runtime
from engine.settings import Settings
from tests.factory import ev
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
