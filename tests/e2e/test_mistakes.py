"""Every class of mistake a user can make ends in one line on stderr and exit code 2: it names
the setting or argument, says what was wrong and what to do, and never shows a traceback or a
secret (issue 14)."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.postgres import db as dbmod
from tests.e2e.test_cli import ROOT

SECRET = "s3cr3tpw"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _files(tmp: Path) -> dict[str, str]:
    """Mistaken files: compressed, binary, a binary master key."""
    (tmp / "events.jsonl.gz").write_bytes(gzip.compress(b'{"id": "x"}\n' * 100))
    (tmp / "random.bin").write_bytes(bytes(range(256)) * 20)
    (tmp / "master.key").write_bytes(b"\xff\xfe" + bytes(range(200)))
    (tmp / "rules.yaml").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp / "event.jsonl").write_text('{"id": "x"}\n')
    return {
        "GZ": str(tmp / "events.jsonl.gz"),
        "BIN": str(tmp / "random.bin"),
        "KEY": str(tmp / "master.key"),
        "RULES": str(tmp / "rules.yaml"),
        "EVENTS": str(tmp / "event.jsonl"),
    }


def _url(server_url: str, **parts: str) -> str:
    """The test server's URL with a password and some parts changed."""
    server = dbmod.from_url(server_url, "public")
    fields = {
        "user": server.user,
        "host": server.host,
        "port": str(server.port),
        "db": server.dbname,
    }
    fields |= {"password": SECRET, **parts}
    return "postgresql://{user}:{password}@{host}:{port}/{db}".format(**fields)


# (id, environment changes, argv, text the line must contain)
SETTINGS = [
    ("closed-port", {"URL": {"port": "CLOSED"}}, ["lead", "show", "k"], "LEADENGINE_DATABASE_URL"),
    ("wrong-user", {"URL": {"user": "nobody_x"}}, ["status"], 'role "nobody_x" does not exist'),
    ("missing-db", {"URL": {"db": "nope_x"}}, ["report", "funnel"], 'database "nope_x"'),
    ("unknown-host", {"URL": {"host": "nohost.invalid"}}, ["db", "init"], "nohost.invalid"),
    (
        "not-a-url",
        {"LEADENGINE_DATABASE_URL": f"not a url {SECRET}"},
        ["lead", "show", "k"],
        "LEADENGINE_DATABASE_URL",
    ),
    (
        "mysql-url",
        {"LEADENGINE_DATABASE_URL": f"mysql://u:{SECRET}@h/db"},
        ["deadletters", "list"],
        "not a PostgreSQL URL",
    ),
    (
        "bad-port",
        {"LEADENGINE_DATABASE_URL": f"host=h password={SECRET} port=abc"},
        ["deadletters", "list"],
        "LEADENGINE_DATABASE_URL",
    ),
    (
        "reserved-schema",
        {"LEADENGINE_DATABASE_SCHEMA": "order"},
        ["db", "init"],
        "LEADENGINE_DATABASE_SCHEMA='order': 'order' is a reserved word",
    ),
    (
        "bad-schema",
        {"LEADENGINE_DATABASE_SCHEMA": "Bad-Name"},
        ["status"],
        "LEADENGINE_DATABASE_SCHEMA='Bad-Name'",
    ),
    ("batch-size", {"LEADENGINE_BATCH_SIZE": "0"}, ["report", "funnel"], "LEADENGINE_BATCH_SIZE"),
    ("log-format", {"LEADENGINE_LOG_FORMAT": "xml"}, ["status"], "set it to console or json"),
    (
        "connect-timeout",
        {"LEADENGINE_CONNECT_TIMEOUT_S": "soon"},
        ["status"],
        "LEADENGINE_CONNECT_TIMEOUT_S",
    ),
    (
        "unwritable-home",
        {"LEADENGINE_HOME": "/proc/leadengine-home"},
        ["lead", "show", "k"],
        "LEADENGINE_HOME='/proc/leadengine-home'",
    ),
    (
        "home-under-a-file",
        {"LEADENGINE_HOME": "/dev/null/home"},
        ["report", "funnel"],
        "LEADENGINE_HOME",
    ),
    ("binary-rules", {"LEADENGINE_RULES_FILE": "RULES"}, ["report", "sla"], "not a text file"),
    ("empty-rules", {"LEADENGINE_RULES_FILE": ""}, ["status"], "LEADENGINE_RULES_FILE='': set but"),
    (
        "binary-master-key",
        {"LEADENGINE_MASTER_KEY_FILE": "KEY"},
        ["lead", "show", "k"],
        "LEADENGINE_MASTER_KEY_FILE",
    ),
    (
        "bad-master-key",
        {"LEADENGINE_MASTER_KEY": SECRET},
        ["lead", "show", "k"],
        "LEADENGINE_MASTER_KEY: expected 32 random bytes",
    ),
]
ARGUMENTS = [
    ("html-missing-dir", ["report", "html", "/missing/dir/r.html"], "argument OUT.html"),
    ("generate-missing-dir", ["generate", "-o", "/missing/dir/x"], "argument -o/--output"),
    ("negative-limit", ["deadletters", "list", "--limit", "-5"], "argument --limit"),
    (
        "limit-beyond-a-bigint",
        ["deadletters", "list", "--limit", str(2**63)],
        f"argument --limit: expected at most {2**63 - 1:,} (a PostgreSQL bigint), got {2**63}",
    ),
    (
        "relay-batch-beyond-a-bigint",
        ["relay", "--batch-size", "1" + "0" * 23],
        "argument --batch-size: expected 1 to 1,000,000 (a batch is held in memory), got 1000",
    ),
    ("zero-leads", ["generate", "--leads", "0"], "argument --leads"),
    ("identity-over-one", ["generate", "--identity", "5"], "expected a share from 0 to 1"),
    ("identity-nan", ["generate", "--identity", "nan"], "expected a share from 0 to 1"),
    (
        "impossible-date",
        ["whatif", "--rules", "engine/default_rules.yaml", "--since", "2026-02-30"],
        "--since",
    ),
    (
        "zero-workers",
        ["whatif", "--rules", "engine/default_rules.yaml", "--workers", "0"],
        "argument --workers: expected 1 or more, got 0",
    ),
    (
        "rebuild-workers-beyond-the-cap",
        ["projections", "rebuild", "leads", "--workers", "999"],
        "--workers: expected at most 16 (each a process with its own database connection), got 999",
    ),
    (
        "refresh-forever",
        ["project", "--follow", "--refresh-attribution", "inf"],
        "argument --refresh-attribution: expected seconds above 0",
    ),
    (
        "refresh-nan",
        ["project", "--follow", "--refresh-attribution", "nan"],
        "argument --refresh-attribution: expected seconds above 0",
    ),
    (
        "duplicates-upside-down",
        ["report", "duplicates", "--from", "2026-05-01", "--to", "2026-01-01"],
        "--from 2026-05-01 is not before --to 2026-01-01",
    ),
    # found by a hostile trial: accepted, then did nothing, looped or tried to fill the disk
    (
        "rebuild-zero-batch",
        ["projections", "rebuild", "leads", "--batch-size", "0"],
        "argument --batch-size: expected 1 to 1,000,000 (a batch is held in memory), got 0",
    ),
    (
        "rebuild-negative-batch",
        ["projections", "rebuild", "leads", "--batch-size", "-5"],
        "argument --batch-size: expected 1 to 1,000,000",
    ),
    ("relay-zero-batch", ["relay", "--batch-size", "0"], "argument --batch-size: expected 1"),
    (
        "status-negative-lag",
        ["status", "--check", "--max-lag", "-1"],
        "argument --max-lag: expected 0 to",
    ),
    (
        "relay-batch-beyond-a-million",
        ["relay", "--batch-size", "1000001"],
        "argument --batch-size: expected 1 to 1,000,000 (a batch is held in memory), got 1000001",
    ),
    (
        "generate-huge-leads",
        ["generate", "--leads", "10000000000"],
        "argument --leads: expected 1 to 10,000,000 (a bound: more would fill memory and "
        "disk), got 10000000000",
    ),
    ("demo-huge-leads", ["demo", "--leads", "10000001"], "argument --leads: expected 1 to"),
    (
        "generate-days-overflow",
        ["generate", "--leads", "1", "--days", "999999999"],
        "argument --days: expected 1 to 3,650 (ten years), got 999999999",
    ),
    ("generate-zero-days", ["generate", "--days", "0"], "argument --days: expected 1 to 3,650"),
    (
        "generate-accounts-beyond",
        ["generate", "--accounts", "100001"],
        "argument --accounts: expected 0 to 100,000",
    ),
    ("generate-accounts-text", ["generate", "--accounts", "many"], "expected a whole number"),
    ("generate-free-mail-over-one", ["generate", "--free-mail", "2"], "expected a share from 0"),
    ("generate-naming-negative", ["generate", "--naming", "-0.1"], "expected a share from 0"),
    ("generate-naming-nan", ["generate", "--naming", "nan"], "expected a share from 0 to 1"),
    (
        "generate-shares-over-one",
        ["generate", "--free-mail", "0.6", "--naming", "0.6"],
        "they add up to at most 1",
    ),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("missing-subcommand", ["report"], "the following arguments are required"),
    ("gzip-ingest", ["ingest", "GZ"], "a gzip file, not JSON Lines text"),
    ("binary-ingest", ["ingest", "BIN"], "binary data, not JSON Lines text"),
    ("missing-file", ["ingest", "/missing/events.jsonl"], "cannot read /missing/events.jsonl"),
]


def _run(env: dict[str, str], argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_one_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    err = proc.stderr
    assert proc.returncode == 2, err
    assert len(err.splitlines()) == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and SECRET not in err + proc.stdout, err
    assert expected in err, err


@pytest.mark.parametrize(
    ("changes", "argv", "expected"),
    [case[1:] for case in SETTINGS],
    ids=[case[0] for case in SETTINGS],
)
def test_a_wrong_setting_is_one_line_naming_the_variable(
    cli_env: dict[str, str],
    server_url: str,
    tmp_path: Path,
    changes: dict[str, object],
    argv: list[str],
    expected: str,
) -> None:
    files = _files(tmp_path)
    env = dict(cli_env)
    for name, value in changes.items():
        if name == "URL":
            assert isinstance(value, dict)
            parts = {k: (str(_closed_port()) if v == "CLOSED" else v) for k, v in value.items()}
            env["LEADENGINE_DATABASE_URL"] = _url(server_url, **parts)
        else:
            env[name] = files.get(str(value), str(value))
    _assert_one_line(_run(env, argv), expected)


@pytest.mark.parametrize(
    ("argv", "expected"), [case[1:] for case in ARGUMENTS], ids=[case[0] for case in ARGUMENTS]
)
def test_a_wrong_argument_or_file_is_one_line_naming_it(
    cli_env: dict[str, str], tmp_path: Path, argv: list[str], expected: str
) -> None:
    files = _files(tmp_path)
    _assert_one_line(_run(cli_env, [files.get(a, a) for a in argv]), expected)


@pytest.mark.parametrize(
    "argv", [["status"], ["status", "--check"], ["publish", "EVENTS"], ["demo", "--leads", "3"]]
)
def test_an_unreachable_broker_is_reported_within_the_connect_timeout(
    cli_env: dict[str, str], tmp_path: Path, argv: list[str]
) -> None:
    files = _files(tmp_path)
    env = cli_env | {
        "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{_closed_port()}",
        "LEADENGINE_CONNECT_TIMEOUT_S": "2",
    }
    started = time.monotonic()
    proc = _run(env, [files.get(a, a) for a in argv])
    elapsed = time.monotonic() - started
    _assert_one_line(proc, "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS: ")
    assert "within 2 s" in proc.stderr or "KafkaTimeoutError" in proc.stderr
    assert elapsed < 20, elapsed  # was 30 s of client retries; 2 s + start-up on a busy machine
    if argv == ["status", "--check"]:
        assert proc.stdout == ""  # a probe's output is its one line


def test_a_bug_is_one_line_and_the_trace_is_kept_in_a_file(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """An error nobody planned for: one line saying where the (masked) trace was written."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "from engine.cli import main as cli\n"
        "from engine.cli.commands import schemas as ops\n"
        "def boom(args):\n"
        f"    raise RuntimeError('password={SECRET} and then it broke')\n"
        "ops.rules_show = boom\n"
        "sys.exit(cli.main(['rules', 'show']))\n"
    )
    env = cli_env | {"TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(probe)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    _assert_one_line(proc, "unexpected error: RuntimeError")
    (trace,) = tmp_path.glob("leadengine-crash-*.txt")
    assert str(trace) in proc.stderr
    text = trace.read_text()
    assert "Traceback" in text and "and then it broke" in text and SECRET not in text


def test_version(cli_env: dict[str, str]) -> None:
    from engine import __version__

    proc = _run(cli_env, ["--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"leadengine {__version__}"


def test_exit_codes_are_documented_alike() -> None:
    """The table in --help, README and docs/operations.md says the same three codes."""
    helptext = _run(dict(os.environ), ["--help"]).stdout
    for text in (
        helptext,
        (ROOT / "README.md").read_text(),
        (ROOT / "docs/operations.md").read_text(),
    ):
        assert "exit codes" in text.lower()
        for line in ("0", "1", "2"):
            assert f"\n  {line}  " in text or f"| {line} |" in text, line
