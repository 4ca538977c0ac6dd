"""Work around a psycopg 3 pipeline deadlock that eventsourcing's batched inserts trigger.

`Pipeline.sync()` sends the queued commands, then waits to *read* results without making sure
libpq's output buffer was fully flushed. When a batch is one big message (eventsourcing sends a
whole `save(*aggregates)` as one array parameter, megabytes for a large Kafka batch) and the
socket buffer is small (a Unix-domain socket, as the embedded PostgreSQL uses), the tail of the
message stays in the client's buffer: the server waits for it (`ClientRead`), the client waits
for a reply, forever. Pipeline *exit* already flushes (psycopg PR #722); sync does not
(psycopg 3.3.9, both the C and the Python implementation).

The fix flushes the output buffer completely (reading input meanwhile, as psycopg's own `send`
generator does) before fetching. Applied once, on import of `engine.db`; a no-op if a future
psycopg changes the private method it wraps. `tests/integration/test_pgfix.py` reproduces the
hang without it.
"""

from __future__ import annotations

from typing import Any

_applied = False


def apply() -> bool:
    """Patch `BasePipeline._sync_gen` to flush fully before fetching; True if patched."""
    global _applied
    if _applied:
        return True
    try:
        from psycopg import _pipeline_base
        from psycopg.generators import send
    except ImportError:  # pragma: no cover - layout changed; nothing to patch
        return False
    base = getattr(_pipeline_base, "BasePipeline", None)
    if base is None or not hasattr(base, "_sync_gen"):  # pragma: no cover
        return False

    def _sync_gen(self: Any) -> Any:
        self._enqueue_sync()
        yield from self._communicate_gen()
        yield from send(self.pgconn)  # the missing step: flush everything that is queued
        yield from self._fetch_gen(flush=False)

    base._sync_gen = _sync_gen
    _applied = True
    return True
