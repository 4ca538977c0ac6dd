"""`leadengine ingest`: JSON Lines of CloudEvents from a file or stdin into the store."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from engine.cli.args import Commands, fmt, handles
from engine.cli.commands.project import project_with_progress
from engine.cli.inputs import read_lines
from engine.cli.output import render, to_json
from engine.cli.progress import Progress, count_lines
from engine.consumers.lines import LinesReport, ingest_lines
from engine.runtime import Runtime, open_runtime


def register(commands: Commands) -> None:
    p = commands.add(
        "ingest",
        help="ingest JSON Lines of CloudEvents from a file or stdin",
        description="Valid events are recorded (the same source and id again is a no-op; "
        "with other content, a conflict); invalid lines and conflicts are kept in the "
        "dead-letter table with the reason. "
        "Projections are brought up to date afterwards unless --no-project.",
    )
    p.add_argument("file", help="path to a .jsonl file, or - for stdin")
    p.add_argument("--no-project", action="store_true", help="only record, do not project")
    fmt(p)
    handles(p, ingest)


def ingest_with_progress(
    rt: Runtime,
    lines: Iterable[bytes],
    origin: str,
    total: int | None = None,
    path: str | None = None,
) -> LinesReport:
    bar = Progress("ingest", total)
    if bar.enabled and total is None and path is not None:
        bar.total = count_lines(path)  # a second read, only for a person watching
    report = ingest_lines(
        lines,
        origin=origin,
        app=rt.app,
        deadletters=rt.deadletters,
        batch_size=rt.settings.batch_size,
        max_bytes=rt.settings.max_event_bytes,
        progress=lambda r: bar.update(r.lines),
    )
    bar.done()
    return report


def _counts(fmt: str, report: LinesReport, projected: int | None, where: str) -> str:
    doc: dict[str, Any] = report.as_dict()
    if projected is not None:
        doc["projected"] = projected
    kept = report.rejected + report.conflicts
    doc["dead_letters"] = where if kept else None
    if fmt == "json":
        return to_json(doc)
    rows = [{"what": k, "count": v} for k, v in doc.items() if isinstance(v, int)]
    text = render(fmt, rows, columns=["what", "count"])
    if kept and fmt == "table":
        text += f"\n\nrejected lines are kept in {where} (see `leadengine deadletters list`)"
    return text


def ingest(args: argparse.Namespace) -> int:
    with open_runtime() as rt:
        origin = "stdin" if args.file == "-" else f"file:{args.file}"
        report = ingest_with_progress(rt, read_lines(args.file), origin, path=args.file)
        rt.app.clear_cache()  # the projector keeps its own: never hold both at once
        projected = None if args.no_project else project_with_progress(rt)
        print(_counts(args.format, report, projected, f"{rt.db.schema}.dead_letters"))
    return 1 if report.rejected else 0  # 1: done, but lines were rejected (as publish)
