"""`leadengine consume | publish | status`: the Kafka path."""

from __future__ import annotations

import argparse
import gc
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from kafka.errors import KafkaError
from psycopg import sql

from engine import metrics
from engine.cli.commands.ops import read_lines
from engine.cli.failures import DONE, FAILED, REJECTED
from engine.cli.output import render, to_json
from engine.cli.progress import Progress, count_lines
from engine.consumers.kafka import KafkaIngestor
from engine.consumers.retry import is_transient, kafka_watched, retry_transient, watch_pool
from engine.domain.errors import InvalidEvent, LeadEngineError
from engine.kafka.broker import BrokerUnreachable
from engine.kafka.publish import Publisher
from engine.postgres import db as dbmod
from engine.runtime import Runtime, open_runtime
from engine.sanitize import terminal_text
from engine.services.application import TRACKING_TABLE
from engine.settings import Settings, get_settings


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


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT: finish the batch in hand, commit, leave the group, exit 0."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def consume_into(
    rt: Runtime,
    settings: Settings,
    bootstrap: str,
    *,
    until_caught_up: bool,
    stop: threading.Event,
    project: bool = True,
) -> dict[str, Any]:
    ingestor = retry_transient(  # a service: wait for the broker, logging every few seconds
        lambda: KafkaIngestor(rt.app, settings, bootstrap=bootstrap),
        what="kafka broker",
        stop=stop,
    )
    stats = ingestor.run(stop=stop, until_caught_up=until_caught_up)
    doc = stats.as_dict()
    if project:
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


def wait_for_database(settings: Settings, stop: threading.Event) -> dbmod.Database:
    """Services may start before their database: wait for it, logging every few seconds."""
    database = dbmod.resolve(settings)
    retry_transient(lambda: database.connect().close(), what="database", stop=stop)
    return database


@contextmanager
def database_watched(rt: Runtime) -> Iterator[None]:
    """While a service runs, its connection pool's failures are logged and counted as a
    database outage (see `watch_pool`)."""
    pool = getattr(getattr(rt.app.recorder, "datastore", None), "pool", None)
    done = threading.Event()
    if pool is not None:
        threading.Thread(
            target=watch_pool, args=(pool, done), daemon=True, name="leadengine-outage-watch"
        ).start()
    try:
        yield
    finally:
        done.set()


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


def _stored_positions(rt: Runtime, topic: str) -> dict[int, int]:
    """The positions tracked as exactly `kafka.<topic>.<partition>`: not those of a topic
    whose name merely starts the same (`leads` beside `leads.eu`, a demo's `<topic>.demo-x`)."""
    query = sql.SQL(
        "SELECT application_name, notification_id FROM {} "
        "WHERE application_name LIKE %s ESCAPE '\\' AND application_name ~ %s"
    ).format(sql.Identifier(rt.db.schema, TRACKING_TABLE))
    prefix = f"kafka.{topic}."
    like = "".join("\\" + c if c in "\\%_" else c for c in prefix) + "%"
    exact = "^" + re.escape(prefix) + "[0-9]+$"
    with rt.db.connect() as conn:
        rows = conn.execute(query, (like, exact)).fetchall()
    return {int(name[len(prefix) :]): int(pos) for name, pos in rows}


def _end_offsets(settings: Settings, bootstrap: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), **settings.kafka_client_options()
    )
    try:
        parts = consumer.partitions_for_topic(settings.kafka_topic) or set()
        tps = [TopicPartition(settings.kafka_topic, p) for p in sorted(parts)]
        return {tp.partition: int(o) for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def projection_status(rt: Runtime) -> list[dict[str, Any]]:
    """Each projection: position, the log's head, lag, events/s of its last batch, and how
    many leads it parked."""
    from engine.projections import parking
    from engine.projections.projector import PROJECTIONS

    head = rt.app.recorder.max_notification_id() or 0
    with rt.db.connect() as conn:
        found = {
            row[0]: row[1:]
            for row in conn.execute(
                sql.SQL(
                    "SELECT name, position, batch_events, batch_seconds, updated_at FROM {}"
                ).format(sql.Identifier(rt.db.schema, "projection_tracking"))
            ).fetchall()
        }
        parked = parking.counts(conn, rt.db.schema)
    out = []
    for name in PROJECTIONS:
        position, events, seconds, updated = found.get(name, (0, 0, 0.0, None))
        out.append(
            {
                "name": name,
                "position": int(position),
                "log_head": head,
                "lag": max(0, head - int(position)),
                "events_per_s": round(events / seconds) if seconds else None,
                "updated_at": updated.isoformat(timespec="seconds") if updated else None,
                "parked": parked.get(name, 0),
            }
        )
    return out


def relay_status(rt: Runtime) -> list[dict[str, Any]]:
    """Each outbound topic `leadengine relay` publishes to: its position in the log and lag."""
    from engine.kafka import relay

    head = rt.app.recorder.max_notification_id() or 0
    return [
        {**row, "log_head": head, "lag": max(0, head - row["position"])}
        for row in relay.status(rt.db)
    ]


def _check(doc: dict[str, Any], max_lag: int | None, allow_parked: bool = False) -> int:
    problems = []
    for proj in doc["projections"]:
        if proj["parked"] and not allow_parked:
            problems.append(
                f"projection {proj['name']} parked {proj['parked']} lead(s): see "
                "`leadengine projections list`, fix, then `leadengine projections retry`"
            )
    if max_lag is not None:
        for proj in doc["projections"]:
            if proj["lag"] > max_lag:
                problems.append(f"projection {proj['name']} lag {proj['lag']} > {max_lag}")
        for p in doc["partitions"]:
            if p["lag"] is not None and p["lag"] > max_lag:
                problems.append(f"partition {p['partition']} lag {p['lag']} > {max_lag}")
        for r in doc.get("relays", []):
            if r["lag"] > max_lag:
                problems.append(f"relay to {r['topic']} lag {r['lag']} > {max_lag}")
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return REJECTED
    return DONE


def status(args: argparse.Namespace) -> int:
    settings = get_settings()
    with open_runtime(settings) as rt:
        stored = _stored_positions(rt, settings.kafka_topic)
        ends: dict[int, int] = {}
        broker_error = None
        if settings.kafka_bootstrap_servers:
            try:
                ends = _end_offsets(settings, settings.kafka_bootstrap_servers)
            except KafkaError as exc:  # status still prints what the store knows
                broker_error = str(
                    BrokerUnreachable(
                        settings.kafka_bootstrap_servers, settings.connect_timeout_s, exc
                    )
                )
        partitions = [
            {
                "partition": p,
                "stored_position": stored.get(p),
                "end_offset": ends.get(p),
                "lag": (max(0, ends[p] - (stored.get(p, -1) + 1)) if p in ends else None),
            }
            for p in sorted(set(stored) | set(ends))
        ]
        projections = projection_status(rt)
        relays = relay_status(rt)
    doc = {
        "topic": settings.kafka_topic,
        "partitions": partitions,
        "projections": projections,
        "relays": relays,
        "broker_error": broker_error,
    }
    if broker_error:  # could not do the whole job: one line, exit 2 (after the rest, if asked)
        if not getattr(args, "check", False):
            _print_status(args.format, doc)
        print(f"leadengine: {broker_error}", file=sys.stderr)
        return FAILED
    if getattr(args, "check", False):
        return _check(doc, args.max_lag, getattr(args, "allow_parked", False))
    _print_status(args.format, doc)
    return DONE


def _print_status(fmt: str, doc: dict[str, Any]) -> None:
    partitions, projections = doc["partitions"], doc["projections"]
    if fmt == "json":
        print(to_json(doc))
    else:
        print(render(fmt, partitions, title=f"Kafka topic {doc['topic']}"))
        print()
        print(
            render(
                fmt,
                projections,
                title="Projections",
                columns=[
                    "name",
                    "position",
                    "log_head",
                    "lag",
                    "events_per_s",
                    "updated_at",
                    "parked",
                ],
            )
        )
        if doc["relays"]:
            print()
            print(render(fmt, doc["relays"], title="Relayed decisions (leadengine relay)"))
