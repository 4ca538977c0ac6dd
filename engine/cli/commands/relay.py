"""`leadengine relay`: publish the engine's decisions to Kafka (engine/kafka/relay.py)."""

from __future__ import annotations

import argparse
import gc
import threading
import time

from engine import metrics
from engine.cli.args import MAX_BATCH, Commands, batch_size, fmt, handles
from engine.cli.commands.streaming import bootstrap_of
from engine.cli.output import render
from engine.cli.running import database_watched, install_stop_handlers, wait_for_database
from engine.consumers.retry import kafka_watched, retry_transient
from engine.domain.errors import LeadEngineError
from engine.kafka.publish import ensure_topic
from engine.kafka.relay import Relay, producer
from engine.logs import get_logger
from engine.runtime import existing_database, open_runtime
from engine.settings import get_settings

log = get_logger("engine.relay")


def register(commands: Commands) -> None:
    fmt(handles(add_parser(commands), relay))
    fmt(handles(add_timers_parser(commands), timers))


def relay(args: argparse.Namespace) -> int:
    """Follow the log (or, with --until-caught-up, stop when caught up) and publish decisions;
    SIGTERM/SIGINT finish the batch in hand (published, acknowledged, position committed)."""
    settings = get_settings()
    if args.topic:
        settings = settings.model_copy(update={"relay_topic": args.topic})
    if not settings.kafka_bootstrap_servers and not args.bootstrap:
        raise LeadEngineError(
            "no Kafka broker: set LEADENGINE_KAFKA_BOOTSTRAP_SERVERS (or --bootstrap)"
        )
    bootstrap = bootstrap_of(args, settings)
    topic = settings.relay_topic
    gc.set_threshold(50_000, 50, 50)
    stop = threading.Event()
    install_stop_handlers(stop)
    if not args.until_caught_up:
        metrics.serve(settings.metrics_port)
    database = wait_for_database(settings, stop)
    options = settings.kafka_client_options()
    with open_runtime(settings, database=database) as rt, database_watched(rt), kafka_watched():
        retry_transient(
            lambda: ensure_topic(bootstrap, topic, args.partitions, **options),
            what="kafka broker",
            stop=stop,
        )
        out = retry_transient(
            lambda: producer(bootstrap, **options), what="kafka broker", stop=stop
        )
        relayer = Relay(rt.app, rt.db, out, topic, rt.rules, batch_size=args.batch_size)
        try:
            if args.from_start:
                relayer.reset()
            log.info("relay following the log", topic=topic, position=relayer.position())
            published = 0
            last_lag = 0.0

            def stopped() -> bool:
                nonlocal last_lag
                if time.monotonic() - last_lag >= 1.0:  # one query a second at most
                    metrics.relay_lag.labels(topic=topic).set(relayer.lag())
                    last_lag = time.monotonic()
                return stop.is_set()

            def follow() -> int:  # an outage mid-stream: logged, counted, waited out
                nonlocal published
                published += relayer.run(until_caught_up=args.until_caught_up, stop=stopped)
                return published

            retry_transient(follow, what="relay (database or broker)", log=log, stop=stop)
            position = relayer.position()
            log.info("relay stopped", topic=topic, published=published, position=position)
        finally:
            relayer.close()
            out.close(timeout=10)
    doc = {"topic": topic, "published": published, "position": position}
    print(render(args.format, [doc], document=doc))
    return 0


def add_parser(commands: Commands) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add(
        "relay",
        help="publish the engine's decisions (MQL, routing, stage, anomaly, SLA, identity, "
        "erasure) to Kafka",
        description="Follow the event log and publish each decision as a CloudEvent to the "
        "relay topic (LEADENGINE_RELAY_TOPIC, default lead-decisions); the position moves in "
        "PostgreSQL only after the broker acknowledged the batch. At-least-once with stable "
        "ids (<lead id>:<version>); see docs/integration.md.",
    )
    p.add_argument("--topic", help="publish here instead of LEADENGINE_RELAY_TOPIC")
    p.add_argument("--bootstrap", help="host:port[,host:port] (default: the settings')")
    p.add_argument(
        "--from-start",
        action="store_true",
        help="forget this topic's position and publish the whole history again (to a new "
        "topic, or to rebuild a consumer's copy)",
    )
    p.add_argument(
        "--until-caught-up",
        action="store_true",
        help="stop when the log is relayed (default: run as a service until SIGTERM)",
    )
    p.add_argument(
        "--partitions", type=int, default=4, help="partitions of the topic if it is created"
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=5000,
        metavar="N",
        help=f"records per batch, 1 to {MAX_BATCH:,} (notifications, for history older than "
        "the outbox; default 5000)",
    )
    return p


def timers(args: argparse.Namespace) -> int:
    """The SLA timer service (engine/services/timers.py) until SIGTERM/SIGINT."""
    from engine.services.timers import TimerService

    settings = get_settings()
    if settings.database_url is None:  # no embedded server's data made to be read
        existing_database(settings, None)
    stop = threading.Event()
    install_stop_handlers(stop)
    metrics.serve(settings.metrics_port)
    database = wait_for_database(settings, stop)
    # it fires timers of leads stored: a missing event store is refused, not made empty
    with open_runtime(settings, database=database, create=False) as rt, database_watched(rt):
        if rt.rules.sla is None:
            raise LeadEngineError("the rules have no `sla:` section: no timers to fire")
        service = TimerService(rt.app, rt.rules.sla)
        log.info("timers following the log")
        recorded = retry_transient(lambda: service.run(stop), what="database", log=log, stop=stop)
    doc = {"recorded": recorded, "position": service.position}
    print(render(args.format, [doc], document=doc))
    return 0


def add_timers_parser(commands: Commands) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = commands.add(
        "timers",
        help="record SLA alerts (at risk, breached) as their moments pass; a service",
        description="Follow the event log; for each routed lead sleep until its next SLA "
        "moment (at-risk share, due), then record Lead.SlaAlerted if the timer is still open. "
        "The relay publishes them as lead.sla_alerted (docs/integration.md). It waits for "
        "the database to come up, but refuses a database with no event store (run "
        "`leadengine ingest` or `consume` first).",
    )
    return p
