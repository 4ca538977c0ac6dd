"""`consume` projects beside consuming (engine/consumers/beside.py): a projector following the
log while it grows gives the same rows as one run afterwards; `--until-caught-up` ends with
everything stored projected too; a failing lead parks; a failure that is not one lead's stops
the consumer with its reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.consumers.beside import ProjectorBeside, ProjectorFailed, project_beside
from engine.domain.contract import validate_event
from engine.domain.generator import generate
from engine.postgres import db as dbmod
from engine.projections import rows
from engine.projections.projector import PROJECTIONS
from engine.runtime import Runtime
from engine.settings import Settings
from tests.integration.test_parking import clean_projection, parked, snapshot
from tests.kafka_helpers import publish, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _ingest_in_steps(runtime: Runtime, events: list[Any], steps: int) -> None:
    size = len(events) // steps + 1
    for i in range(0, len(events), size):
        runtime.app.ingest(events[i : i + size])


def test_projecting_while_the_log_grows_gives_the_rows_of_one_run_afterwards(
    runtime: Runtime,
) -> None:
    events = [validate_event(e) for e in generate(60, seed=4)]
    stop, drain = threading.Event(), threading.Event()
    result: list[int] = []
    beside = threading.Thread(
        target=lambda: result.append(
            project_beside(
                runtime.app, runtime.db, stop=stop, drain=drain, batch_size=53, cache_size=7
            )  # type: ignore[arg-type]
        )
    )
    beside.start()
    _ingest_in_steps(runtime, events, 9)  # the projector reads while these commit
    drain.set()  # everything is stored: caught up means projected up to here
    beside.join(120)
    assert not beside.is_alive()
    head = runtime.app.recorder.max_notification_id()
    assert result == [head]
    assert runtime.projector.positions() == dict.fromkeys(PROJECTIONS, head)
    projected = snapshot(runtime)
    assert projected["lead_state"] and projected["lead_touchpoints"]
    assert projected == clean_projection(runtime)


def test_a_failing_lead_parks_and_the_projector_beside_goes_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [validate_event(e) for e in generate(40, seed=9)]
    target = next(e.subject for e in events if e.type.startswith("touch."))
    original = rows.touch_row

    def faulty(lead: Any, event: Any, position: int) -> tuple[Any, ...]:
        if lead.key == target:
            raise RuntimeError(f"injected fault for {target}")
        return original(lead, event, position)

    monkeypatch.setattr(rows, "touch_row", faulty)
    stop, drain = threading.Event(), threading.Event()
    beside = threading.Thread(
        target=project_beside,
        args=(runtime.app, runtime.db),
        kwargs={"stop": stop, "drain": drain, "batch_size": 97, "cache_size": 1000},
    )
    beside.start()
    _ingest_in_steps(runtime, events, 4)
    drain.set()
    beside.join(120)
    head = runtime.app.recorder.max_notification_id()
    assert runtime.projector.positions() == dict.fromkeys(PROJECTIONS, head)
    ((projection, _id, key, error, _reason, _attempts),) = parked(runtime)
    assert (projection, key, error) == ("touchpoints", target, "RuntimeError")


def test_a_failure_that_is_not_one_leads_stops_the_consumer_with_its_reason(
    runtime: Runtime, settings: Settings, server_url: str
) -> None:
    # a schema that does not exist: the projector fails on the database, not on a lead
    empty = dbmod.from_url(server_url, "nothing_here")
    told = threading.Event()
    beside = ProjectorBeside(
        settings, empty, runtime.app.rules, runtime.app.master_key, on_failure=told.set
    ).start()
    assert told.wait(120), "the consumer was not told to stop"
    with pytest.raises(ProjectorFailed, match=r"nothing_here.*does not exist"):
        beside.finish(timeout=60)


def test_consume_until_caught_up_ends_stored_and_projected(
    kafka_env: dict[str, str], kafka_settings: Settings, runtime: Runtime
) -> None:
    events = generate(300, seed=12)
    publish(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, events)
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "consume", "--until-caught-up", "--format", "json"],
        env=kafka_env | {"LEADENGINE_BATCH_SIZE": "500"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the generator's bad lines
    doc = json.loads(proc.stdout)
    head = runtime.app.recorder.max_notification_id()
    assert doc["accepted"] > 0
    assert doc["projected"] == head  # every stored event, projected before it exited
    assert runtime.projector.positions() == dict.fromkeys(PROJECTIONS, head)
    assert snapshot(runtime) == clean_projection(runtime)


def test_sigterm_ends_the_consumer_and_the_projector_beside_it(
    kafka_env: dict[str, str], kafka_settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    events = generate(300, seed=13)
    publish(str(kafka_settings.kafka_bootstrap_servers), kafka_settings.kafka_topic, events)
    log = (tmp_path / "consume.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "consume", "--format", "json"],  # a service
        env=kafka_env | {"LEADENGINE_BATCH_SIZE": "200"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        wait_for(lambda: runtime.projector.position() > 0, timeout=180)  # projecting meanwhile
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1), (tmp_path / "consume.log").read_text()[-3000:]
    doc = json.loads(out)
    assert doc["projected"] > 0
    # stopped between commits: projecting the rest gives what one run from scratch gives
    runtime.projector.run()
    assert snapshot(runtime) == clean_projection(runtime)
