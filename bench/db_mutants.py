"""Mutation score of the modules whose tests need PostgreSQL or a Kafka broker (docs/mutation.md).

mutmut cannot reach them: it forks a worker per mutant from a process whose session fixtures
(a connection pool, a broker) do not survive the fork. Here each hand-written mutant is a small
deliberate bug (a check disabled, a position off by one, a field stored as NULL): the project is
copied once to a scratch directory, the mutant is written into the copy, the integration tests
that should catch it run there in a fresh pytest (real PostgreSQL, real broker, the CLI
subprocesses they start load the copy too), and the file is put back. Killed = a test failed
(or timed out); survived = every selected test passed.

Before any mutant the selected tests run once on the unchanged copy: they must pass, or the
run stops (a failing baseline would count every mutant killed).

Usage: python bench/db_mutants.py [--only NAME ...] [--list] [--timeout S]
       needs LEADENGINE_TEST_DATABASE_URL like the tests (else they start an embedded server)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]

VERIFY = ("tests/integration/test_verify_checks.py", "tests/integration/test_verify_topic.py")
AUDIT = (*VERIFY, "tests/integration/test_audit.py")
ERASURE = (
    "tests/integration/test_erasure.py",
    "tests/integration/test_sealed_at_rest.py",
    "tests/unit/test_purge_tokens.py",
)
LETTERS = (
    "tests/integration/test_dead_letters.py",
    "tests/integration/test_deadletter_replay.py",
    "tests/integration/test_deadletter_purge_age.py",
)
KAFKA = (
    "tests/integration/test_kafka.py",
    "tests/integration/test_kafka_redelivered.py",
    "tests/integration/test_status_positions.py",
)
CONTRACT = (
    "tests/unit/test_contract.py",
    "tests/unit/test_contract_size.py",
    "tests/property/test_contract_properties.py",
    "tests/integration/test_contract_safety.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    area: str  # what the score is reported per
    find: str  # found exactly once in exactly one file under engine/ (modules may move)
    replace: str
    tests: tuple[str, ...]


MUTANTS = (
    # -- verify and chain ---------------------------------------------------------------------
    Mutant("verify: link check off", "verify and chain",
           "if link(previous, bytes(dig)) != bytes(entry):", "if False:", VERIFY),
    Mutant("verify: digest check off", "verify and chain",
           "if digest(agg_id, version, topic, bytes(state)) != bytes(dig):", "if False:", VERIFY),
    Mutant("verify: version gap check off", "verify and chain",
           "        if version != expected:\n", "        if False:\n", VERIFY),
    Mutant("verify: missing event check off", "verify and chain",
           "        if not has_event:\n            report.breaks.append(Break(agg, version, "
           '"event missing',
           "        if False:\n            report.breaks.append(Break(agg, version, "
           '"event missing', VERIFY),
    Mutant("verify: unlinked event accepted", "verify and chain",
           "            if not linked and 0 < nid < report.chained_from:",
           "            if True:", VERIFY),
    Mutant("chain: digest leaves out the topic", "verify and chain",
           "    h.update(topic.encode())\n", "", AUDIT),
    Mutant("chain: link follows two versions back", "verify and chain",
           "AND originator_version = %(v)s - 1)", "AND originator_version = %(v)s - 2)", AUDIT),
    Mutant("verify: anchor event count ignored", "verify and chain",
           "if chained != a.events or h.copy().hexdigest() != a.anchor:",
           "if h.copy().hexdigest() != a.anchor:", AUDIT),
    # -- privacy and forget -------------------------------------------------------------------
    Mutant("forget: dead letters purged by the key only", "privacy and forget",
           "needles = _needles([key, *values])", "needles = _needles([key])", ERASURE),
    Mutant("forget: key not shredded", "privacy and forget",
           "shredded = self.keys.shred(lead.id)", "shredded = False", ERASURE),
    Mutant("forget: matching is case-sensitive", "privacy and forget",
           'return unicodedata.normalize("NFKC", text).casefold()',
           'return unicodedata.normalize("NFKC", text)', ERASURE),
    Mutant("forget: values matched inside other words", "privacy and forget",
           'r"(?<![\\w.@+-])" + re.escape(v) + r"(?![\\w@-]|\\.\\w)"', "re.escape(v)", ERASURE),
    Mutant("seal: first personal field left in clear", "privacy and forget",
           "        fields = present_pii(event_type, data)\n",
           "        fields = present_pii(event_type, data)[1:]\n", ERASURE),
    Mutant("seal: unknown fields kept in clear", "privacy and forget",
           "        if key is None:  # no key store: a mapper outside the engine",
           "        return domain_event\n        if key is None:  # no key store",
           (*ERASURE, "tests/integration/test_unknown_fields.py")),
    # -- dead letters -------------------------------------------------------------------------
    Mutant("dead letters: event_type stored as NULL", "dead letters",
           "return (self.origin, e.event_id, e.event_type, e.field,",
           "return (self.origin, e.event_id, None, e.field,", LETTERS),
    Mutant("dead letters: field stored as NULL", "dead letters",
           "return (self.origin, e.event_id, e.event_type, e.field,",
           "return (self.origin, e.event_id, e.event_type, None,", LETTERS),
    Mutant("dead letters: replay pages re-read their last row", "dead letters",
           'where = "id > %s"', 'where = "id >= %s"', LETTERS),
    Mutant("dead letters: a refused replay updates every other row", "dead letters",
           "field = %s, error = %s WHERE id = %s", "field = %s, error = %s WHERE id <> %s",
           LETTERS),
    Mutant("dead letters: purge by age includes the moment", "dead letters",
           'clauses.append("received_at < %s")', 'clauses.append("received_at <= %s")', LETTERS),
    Mutant("dead letters: same bytes from another origin kept once", "dead letters",
           "ON CONFLICT (origin, digest) DO NOTHING", "ON CONFLICT DO NOTHING", LETTERS),
    # -- the consumer's positions -------------------------------------------------------------
    Mutant("kafka: position stored one past the last record", "consumer positions",
           "good, tracking=Tracking(name, last), keep_rejected",
           "good, tracking=Tracking(name, last + 1), keep_rejected", KAFKA),
    Mutant("kafka: seek to the stored position, not + 1", "consumer positions",
           "self.consumer.seek(tp, stored + 1)", "self.consumer.seek(tp, stored)", KAFKA),
    Mutant("kafka: stored position forgotten on assignment", "consumer positions",
           "                self.positions[tp] = stored\n",
           "                self.positions[tp] = -1\n", KAFKA),
    Mutant("kafka: the last consumed record counted fresh again", "consumer positions",
           "fresh = [r for r in records if r.offset > self.positions.get(tp, -1)]",
           "fresh = [r for r in records if r.offset >= self.positions.get(tp, -1)]", KAFKA),
    Mutant("kafka: dead-letter offset header off by one", "consumer positions",
           '("source.offset", str(record.offset)),', '("source.offset", str(record.offset + 1)),',
           KAFKA),
    Mutant("kafka: dead-letter partition header 0", "consumer positions",
           '("source.partition", str(record.partition)),', '("source.partition", "0"),', KAFKA),
    Mutant("kafka: dead-letter event id header empty", "consumer positions",
           '("error.event_id", error.event_id or ""),', '("error.event_id", ""),', KAFKA),
    # -- contract validation ------------------------------------------------------------------
    Mutant("contract: size limit off by one", "contract validation",
           "    if len(raw) > max_bytes:\n", "    if len(raw) >= max_bytes:\n", CONTRACT),
    Mutant("contract: empty personal values not sealed", "contract validation",
           "if data.get(f) is not None)", "if data.get(f))", CONTRACT + ERASURE),
    Mutant("contract: NUL characters let through", "contract validation",
           "def _no_nul(node: Any) -> None:\n", "def _no_nul(node: Any) -> None:\n    return\n",
           CONTRACT),
)  # fmt: skip


def locate(copy: Path, mutant: Mutant) -> Path:
    hits = [
        (path, path.read_text().count(mutant.find))
        for path in sorted((copy / "engine").rglob("*.py"))
        if mutant.find in path.read_text()
    ]
    if len(hits) != 1 or hits[0][1] != 1:
        where = ", ".join(f"{p.relative_to(copy)} x{n}" for p, n in hits) or "nowhere"
        raise SystemExit(f"mutant {mutant.name!r}: its text is found {where}; update MUTANTS")
    return hits[0][0]


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float]:
    env = os.environ | {"PYTHONPATH": str(copy)}
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-p", "no:randomly", f"--basetemp={copy.parent / 'pt'}", *tests]  # fmt: skip
    try:
        proc = subprocess.run(command, cwd=copy, env=env, capture_output=True, timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = -1  # a hang is a failure the mutant caused
    return code, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="mutants whose name has this")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's tests")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    console = Console(width=None if sys.stdout.isatty() else 120)
    if args.list:
        for m in chosen:
            console.print(f"{m.area:22} {m.name}")
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="db-mutants-"))
    copy = scratch / "project"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "mutants", ".hypothesis", "__pycache__", ".mypy_cache", ".ruff_cache",
        ".pytest_cache", ".leadengine",
    )  # fmt: skip
    shutil.copytree(ROOT, copy, ignore=ignore)
    try:
        files = {m.name: locate(copy, m) for m in chosen}  # every text found before any run
        baseline = sorted({t for m in chosen for t in m.tests})
        code, took = run_tests(copy, tuple(baseline), args.timeout)
        if code != 0:
            console.print(f"[red]the unchanged tests fail (exit {code}): no score[/red]")
            return 2
        console.print(f"baseline: {len(baseline)} test files pass unchanged ({took:.0f} s)")
        results: list[tuple[Mutant, str, float]] = []
        for m in chosen:
            path = files[m.name]
            original = path.read_text()
            path.write_text(original.replace(m.find, m.replace, 1))
            try:
                code, took = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "survived" if code == 0 else "killed"
            results.append((m, verdict, took))
            console.print(f"{verdict:9} {took:5.0f} s  {m.name}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = Table(title="mutation score of the DB- and broker-backed code")
    for column in ("area", "mutants", "killed", "survived", "score"):
        table.add_column(column, justify="left" if column == "area" else "right")
    areas: dict[str, Counter[str]] = {}
    for m, verdict, _ in results:
        areas.setdefault(m.area, Counter())[verdict] += 1
    total: Counter[str] = Counter()
    for area, counts in areas.items():
        total += counts
        n = counts["killed"] + counts["survived"]
        table.add_row(area, str(n), str(counts["killed"]), str(counts["survived"]),
                      f"{100 * counts['killed'] / n:.1f}%")  # fmt: skip
    n = total["killed"] + total["survived"]
    if n:
        table.add_row("TOTAL", str(n), str(total["killed"]), str(total["survived"]),
                      f"{100 * total['killed'] / n:.1f}%", style="bold")  # fmt: skip
    console.print(table)
    for m, verdict, _ in results:
        if verdict == "survived":
            console.print(f"survived  {m.name}  ({files[m.name].relative_to(copy)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
