"""`leadengine consume | publish | status`: the Kafka path."""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import threading
from typing import Any

from kafka.errors import KafkaError

from engine import metrics
from engine.cli.args import Commands, fmt, handles
from engine.cli.failures import DONE, REJECTED
from engine.cli.inputs import read_lines
from engine.cli.output import render
from engine.cli.progress import Progress, count_lines
from engine.cli.running import database_watched, install_stop_handlers, wait_for_database
from engine.consumers.beside import ProjectorBeside, ProjectorFailed
from engine.consumers.kafka import KafkaIngestor
from engine.consumers.retry import is_transient, kafka_watched, retry_transient
from engine.domain.errors import InvalidEvent, LeadEngineError
from engine.kafka.broker import BrokerUnreachable
from engine.kafka.publish import Publisher
from engine.postgres.store import datastore_of
from engine.runtime import Runtime, open_runtime
from engine.sanitize import terminal_text
from engine.settings import Settings, get_settings


def register(commands: Commands) -> None:
    p = commands.add(
        "consume",
        help="consume the Kafka topic into the store (exactly-once effects)",
        description="Joins the consumer group, seeks each assigned partition to the position "
        "stored with the events, records batches with their positions in one transaction, "
        "sends invalid records to the dead-letter topic (<topic>.dlq). SIGTERM/SIGINT finish "
        "the batch in hand and exit 0.",
    )
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="exit when every assigned partition is read to its end and everything stored "
        "is projected",
    )
    p.add_argument("--topic", help="topic (default LEADENGINE_KAFKA_TOPIC or lead-events)")
    p.add_argument("--group", help="consumer group (default LEADENGINE_KAFKA_GROUP)")
    p.add_argument(
        "--bootstrap", help="host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"
    )
    p.add_argument(
        "--no-project",
        action="store_true",
        help="store only (by default a projector process runs beside the consumer, and "
        "--until-caught-up waits until everything stored is projected too)",
    )
    fmt(p)
    handles(p, consume)

    p = commands.add(
        "publish",
        help="send JSON Lines of CloudEvents to the Kafka topic",
        description="Key = subject (the lead key). Lines are validated first; "
        "invalid ones are reported with their line number and not sent "
        "(exit 1).",
    )
    p.add_argument("file", help="path to a .jsonl file, or - for stdin")
    p.add_argument("--no-validate", action="store_true", help="send without validating")
    p.add_argument("--topic", help="topic (default LEADENGINE_KAFKA_TOPIC or lead-events)")
    p.add_argument(
        "--bootstrap", help="host:port[,...] (default LEADENGINE_KAFKA_BOOTSTRAP_SERVERS)"
    )
    fmt(p)
    handles(p, publish)


def kafka_settings(args: argparse.Namespace) -> Settings:
    settings = get_settings()
    updates = {
        k: v
        for k, v in (
            ("kafka_topic", getattr(args, "topic", None)),
            ("kafka_group", getattr(args, "group", None)),
        )
        if v
    }
    settings = settings.model_copy(update=updates) if updates else settings
    if not settings.kafka_bootstrap_servers and not getattr(args, "bootstrap", None):
        raise LeadEngineError(
            "no Kafka broker: set LEADENGINE_KAFKA_BOOTSTRAP_SERVERS (or --bootstrap)"
        )
    return settings


def bootstrap_of(args: argparse.Namespace, settings: Settings) -> str:
    return str(getattr(args, "bootstrap", None) or settings.kafka_bootstrap_servers)


def consume_into(
    rt: Runtime,
    settings: Settings,
    bootstrap: str,
    *,
    until_caught_up: bool,
    stop: threading.Event,
    project: bool = True,
) -> dict[str, Any]:
    """Consume (and, unless `project` is False, project beside it: engine/consumers/beside.py)
    until `stop`, or until caught up: stored and projected."""
    beside = None
    if project and datastore_of(rt.app.recorder) is not None:  # a PostgreSQL store
        beside = ProjectorBeside(
            settings, rt.db, rt.app.rules, rt.app.master_key, on_failure=stop.set
        ).start()
    try:
        ingestor = retry_transient(  # a service: wait for the broker, logging every few seconds
            lambda: KafkaIngestor(rt.app, settings, bootstrap=bootstrap),
            what="kafka broker",
            stop=stop,
        )
        stats = ingestor.run(stop=stop, until_caught_up=until_caught_up)
    except BaseException:
        if beside is not None:
            with contextlib.suppress(ProjectorFailed):
                beside.stop(timeout=60)
        raise
    doc = stats.as_dict()
    if beside is not None:
        doc["projected"] = beside.stop() if stop.is_set() else beside.finish()
    elif project:
        doc["projected"] = rt.projector.run(until_caught_up=True)
    return doc


def consume(args: argparse.Namespace) -> int:
    settings = kafka_settings(args)
    gc.set_threshold(100_000, 50, 100)  # long-lived worker: fewer full collections
    stop = threading.Event()
    install_stop_handlers(stop)
    metrics.serve(settings.metrics_port)
    wait_for_database(settings, stop)
    with open_runtime(settings) as rt, database_watched(rt), kafka_watched():
        doc = consume_into(
            rt,
            settings,
            bootstrap_of(args, settings),
            until_caught_up=args.until_caught_up,
            stop=stop,
            project=not args.no_project,
        )
    print(render(args.format, [doc], document=doc))
    return REJECTED if doc["dead_lettered"] else DONE


def _publisher(args: argparse.Namespace, settings: Settings) -> Publisher:
    bootstrap = bootstrap_of(args, settings)
    try:
        return Publisher(
            bootstrap,
            topic=settings.kafka_topic,
            validate=not args.no_validate,
            **settings.kafka_client_options(),
        )
    except KafkaError as exc:
        if not is_transient(exc):
            raise
        raise BrokerUnreachable(bootstrap, settings.connect_timeout_s, exc) from None


def publish(args: argparse.Namespace) -> int:
    settings = kafka_settings(args)
    rejected = 0
    bar = Progress("publish")
    if bar.enabled:
        bar.total = count_lines(args.file)
    with _publisher(args, settings) as pub:
        number = 0
        try:
            for number, raw in enumerate(read_lines(args.file), start=1):
                line = raw.strip()
                if not line:
                    continue
                try:
                    pub.publish(line)
                except InvalidEvent as exc:
                    rejected += 1
                    print(terminal_text(f"line {number}: not sent: {exc}"), file=sys.stderr)
                bar.update(pub.sent)
        except Exception as exc:
            raise LeadEngineError(_stopped(number, pub.sent, rejected, exc)) from exc
        try:
            pub.flush()
        except Exception as exc:
            raise LeadEngineError(
                f"publish could not confirm delivery ({exc.__class__.__name__}: {exc}): "
                f"{pub.sent} lines were handed to the producer, up to line {number}; "
                "publish them again (duplicates are deduplicated by their id)"
            ) from exc
        sent = pub.sent
    bar.done()
    doc = {"sent": sent, "rejected": rejected, "topic": settings.kafka_topic}
    print(render(args.format, [doc], document=doc))
    return REJECTED if rejected else DONE


def _stopped(number: int, sent: int, rejected: int, exc: Exception) -> str:
    """What a publish that failed part-way had done: the user can resume at the failed line."""
    return (
        f"publish stopped at line {number} ({exc.__class__.__name__}: {exc}); "
        f"of the lines before it, {sent} were handed to the producer and {rejected} rejected; "
        f"line {number} and after were not sent (resume from line {number}; a line handed "
        "over but not yet acknowledged may be sent twice, and is deduplicated by its id)"
    )
