"""Turn `lead.qualified` decisions into CRM tasks: an example consumer of `lead-decisions`.

    python examples/crm_task.py --bootstrap kafka:9092 [--topic lead-decisions] [--group crm-tasks]

Reads the relay's topic (docs/integration.md) and prints one JSON task per new MQL, with the
score, the rules version, the trigger and the top reasons, ready for a CRM's "create task" API.
Records come at least once: the task id is the decision's CloudEvent id, so a CRM that upserts
by it never makes two tasks. Only the standard library and kafka-python are needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any


def task_for(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The CRM task for one outbound CloudEvent, or None when it is not a `lead.qualified`."""
    if decision.get("type") != "lead.qualified":
        return None
    data = decision["data"]
    why = "; ".join(
        f"{r['rule']} {r['points']:+g}" + (f" ({r['note']})" if r["note"] else "")
        for r in data["reasons"]
    )
    return {
        "external_id": decision["id"],  # stable across re-deliveries: upsert by it
        "lead": decision["subject"],
        "title": f"Call new MQL (score {data['score']:g})",
        "due": data["occurred_at"],
        "description": (
            f"Marketing qualified under {data['rules_version']} by event "
            f"{data['trigger_event_id']}. Why: {why or 'see leadengine lead explain'}"
        ),
    }


def tasks(values: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The tasks of a stream of record values, once per decision id."""
    seen: set[str] = set()
    for value in values:
        task = task_for(json.loads(value))
        if task is not None and task["external_id"] not in seen:
            seen.add(task["external_id"])
            yield task


def main(argv: list[str] | None = None) -> int:
    from kafka import KafkaConsumer

    parser = argparse.ArgumentParser(description="lead.qualified -> CRM tasks (JSON lines)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="lead-decisions")
    parser.add_argument(
        "--group", default="crm-tasks", help="consumer group ('': none, read all from the start)"
    )
    parser.add_argument(
        "--idle-ms", type=int, help="stop after this long without a record (default: never)"
    )
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"consumer_timeout_ms": args.idle_ms} if args.idle_ms else {}
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap.split(","),
        group_id=args.group or None,
        auto_offset_reset="earliest",
        **options,
    )
    try:
        for task in tasks(record.value for record in consumer):
            print(json.dumps(task), flush=True)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
