"""`leadengine schemas export` and `rules check | show`: the contract and the rules as files."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from engine.cli.args import Commands, handles
from engine.domain import outbound
from engine.domain.contract import EVENT_TYPES, event_json_schema
from engine.domain.rules import load_rules


def register(commands: Commands) -> None:
    schemas = commands.group(
        "schemas", help="JSON Schemas of the event contract", dest="schemas_command"
    )
    p = schemas.add_parser("export", help="write one JSON Schema file per event type")
    p.add_argument("dir", type=Path, help="output directory, e.g. schemas/")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the files differ from the models",
    )
    handles(p, schemas_export)

    rules = commands.group("rules", help="rules files", dest="rules_command")
    p = rules.add_parser("check", help="validate a rules file, errors with line numbers")
    p.add_argument("file", type=Path, help="the rules YAML to check")
    handles(p, rules_check)
    handles(
        rules.add_parser("show", help="print the shipped default rules (a commented template)"),
        rules_show,
    )


def schema_files() -> dict[str, str]:
    return {
        f"{t}.json": json.dumps(event_json_schema(t), indent=2, sort_keys=True) + "\n"
        for t in sorted(EVENT_TYPES)
    } | {  # the outbound ones: what `leadengine relay` publishes (engine/domain/outbound.py)
        f"{t}.json": json.dumps(outbound.json_schema(t), indent=2, sort_keys=True) + "\n"
        for t in sorted(outbound.DATA)
    }


def schemas_export(args: argparse.Namespace) -> int:
    files = schema_files()
    if args.check:
        stale = [
            n
            for n, text in files.items()
            if not (args.dir / n).exists() or (args.dir / n).read_text("utf-8") != text
        ]
        extra = sorted(p.name for p in args.dir.glob("*.json") if p.name not in files)
        for name in stale:
            print(f"differs from the model: {args.dir / name}", file=sys.stderr)
        for name in extra:
            print(f"no such event type: {args.dir / name}", file=sys.stderr)
        return 1 if stale or extra else 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.dir / name).write_text(text, "utf-8")
    print(f"wrote {len(files)} schemas to {args.dir}")
    return 0


def rules_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    queues = rules.routing.queues if rules.routing else ()
    print(
        f"{args.file}: ok ({rules.ref}: {len(rules.fit.rules)} fit rules, "
        f"{len(rules.engagement.rules)} engagement rules; models "
        f"{', '.join(m.ref for m in rules.all_models())}; {len(rules.personas)} personas; "
        f"{len(queues)} routing queues; SLA {'on' if rules.sla else 'off'}; duplicates "
        + (", ".join(f"{d.match} {d.action}" for d in rules.identity.duplicates) or "off")
        + f"; money in {rules.money.reporting_currency}, {len(rules.money.rates)} rates)"
    )
    return 0


def rules_show(args: argparse.Namespace) -> int:
    print(resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8"), end="")
    return 0
