"""The command line's one error path: any failure becomes one line on stderr and exit code 2.

Expected failures (a setting, a connection, a file, an argument) say what was wrong and what
to do. Anything else is a bug: one line says where the full trace was written. Secrets are
masked in both, whatever the driver put in its message.
"""

from __future__ import annotations

import re
import tempfile
import traceback

from engine.domain.errors import LeadEngineError

DONE, REJECTED, FAILED = 0, 1, 2
"""Exit codes of every command: done; done but something was rejected or unhealthy; could not
run (a setting, connection, file or argument; or a bug)."""

_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask(text: str) -> str:
    """`text` without credentials: URL passwords, `password=` pairs, secret settings' values."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KV_PASSWORD.sub(r"\1***", text)
    from engine.settings import secrets_in_environment  # pydantic: only once something failed

    for secret in secrets_in_environment():
        text = text.replace(secret, "***")
    return text


def one_line(text: str) -> str:
    """`text` on one line: runs of blanks made one space, its lines (several errors) joined
    with "; " so each stays apart."""
    parts = (" ".join(line.split()) for line in text.splitlines())
    return "; ".join(p for p in parts if p)


#: SQLSTATEs of a connection the server ended (administrator command, crash, shutting down):
#: the URL was right, a retry is what helps
_ENDED_BY_SERVER = frozenset({"57P01", "57P02", "57P03"})


def expected(exc: BaseException) -> str | None:
    """The line for a failure the user can act on, or None for a bug."""
    from kafka.errors import KafkaError  # imported on failure only: the CLI starts without them

    from engine.postgres.db import UNREACHABLE

    if isinstance(exc, LeadEngineError):
        return str(exc)
    if isinstance(exc, UNREACHABLE) and getattr(exc, "sqlstate", None) in _ENDED_BY_SERVER:
        return (
            f"LEADENGINE_DATABASE_URL: the server ended the connection ({exc}); what the "
            "command had not committed was rolled back: run it again once the server is up"
        )
    if isinstance(exc, UNREACHABLE):
        return (
            f"LEADENGINE_DATABASE_URL: {exc}; check the URL and that the server is running "
            "and reachable (LEADENGINE_CONNECT_TIMEOUT_S)"
        )
    if isinstance(exc, KafkaError) and getattr(exc, "retriable", False):
        return (
            f"LEADENGINE_KAFKA_BOOTSTRAP_SERVERS: the Kafka broker did not answer "
            f"({type(exc).__name__}: {exc}); check the address and that the broker is running "
            "(LEADENGINE_CONNECT_TIMEOUT_S)"
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}; check the path and its permissions"
    return None


def report(exc: BaseException) -> str:
    """The one line for `exc`; for a bug, the full (masked) trace is written to a file first."""
    line = expected(exc)
    if line is not None:
        return mask(one_line(line))
    trace = "".join(traceback.format_exception(exc))
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="leadengine-crash-", suffix=".txt", delete=False, encoding="utf-8"
        ) as out:
            out.write(mask(trace))
        where = f"full trace in {out.name}"
    except OSError:
        where = "no trace written (temp dir not writable)"
    what = mask(one_line(f"{type(exc).__name__}: {exc}"))[:300]
    return f"unexpected error: {what}; {where} (please report it)"
