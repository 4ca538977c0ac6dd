"""`leadengine status`: stored Kafka positions, lag per partition, projections, relays."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kafka.errors import KafkaError

from engine.cli.args import MAX_COUNT, Commands, fmt, handles, int_from
from engine.cli.failures import DONE, FAILED, REJECTED
from engine.cli.output import render, to_json
from engine.kafka.broker import BrokerUnreachable
from engine.runtime import open_runtime
from engine.services.status import kafka_positions, projection_status, relay_status
from engine.settings import Settings, get_settings


def register(commands: Commands) -> None:
    p = commands.add(
        "status",
        help="stored Kafka positions, lag per partition, projections",
        description="For each partition of the topic: the position stored with the events "
        "(the truth the consumer resumes from), the broker's end offset and the lag; then each "
        "projection's position against the head of the event log. Needs "
        "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS for the Kafka part.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="for probes: exit 1 (with the reason) if a projection has parked leads or a lag "
        "exceeds --max-lag, 2 (one line) if the database or the configured broker is "
        "unreachable; print nothing else",
    )
    p.add_argument(
        "--allow-parked",
        action="store_true",
        help="with --check: parked leads do not fail it (for liveness probes: a restart "
        "cannot fix them; see `projections retry`)",
    )
    p.add_argument(
        "--max-lag",
        type=int_from(0, MAX_COUNT),
        metavar="N",
        help="with --check: most lag allowed (0 or more)",
    )
    fmt(p)
    handles(p, status)


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
    with open_runtime(settings, create=False) as rt:
        stored = kafka_positions(rt.db, settings.kafka_topic)
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
        projections = projection_status(rt.app, rt.db)
        relays = relay_status(rt.app, rt.db)
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
