"""Work around two psycopg 3 pipeline bugs that eventsourcing's batched inserts trigger.

1. Deadlock on sync.

`Pipeline.sync()` sends the queued commands, then waits to *read* results without making sure
libpq's output buffer was fully flushed. When a batch is one big message (eventsourcing sends a
whole `save(*aggregates)` as one array parameter, megabytes for a large Kafka batch) and the
socket buffer is small (a Unix-domain socket, as the embedded PostgreSQL uses), the tail of the
message stays in the client's buffer: the server waits for it (`ClientRead`), the client waits
for a reply, forever. Pipeline *exit* already flushes (psycopg PR #722); sync does not
(psycopg 3.3.9, both the C and the Python implementation).

The fix flushes the output buffer completely (reading input meanwhile, as psycopg's own `send`
generator does) before fetching.

2. A prepared statement that was never prepared. psycopg prepares a query on its 6th use
(`prepare_threshold`). When that use is queued in a pipeline *behind a statement that fails*
(a version conflict on `event_chain`, a tracking conflict between two consumers), the server
skips the Parse, but psycopg records the name as prepared without checking the result: from
then on every use of that query on that connection fails with `prepared statement "_pg3_N"
does not exist`, and the consumer dies. psycopg checks the result only when the query is new
to its cache (`maybe_add_to_cache` returns no key when a counted query becomes prepared). The
fix returns the key in that case too, so the pipeline validates it and forgets a Parse that
did not happen.

Nothing is patched on import. `apply()` puts both in place, once per process; the engine calls
it at its two doors to PostgreSQL, `Database.connect` (its own connections) and
`Database.eventsourcing_env` (the environment eventsourcing's connections are made from), so
every connection the engine opens, in the CLI, a consumer or a rebuild worker, is made with the
fixes in place. Each is a no-op if a future psycopg changes the private method it wraps.
`tests/integration/test_pgfix.py` reproduces both with the fix applied, and checks that importing
the engine patches nothing.
"""

from __future__ import annotations

from typing import Any

_applied = False


def apply() -> bool:
    """Apply both fixes; True if both are in place."""
    global _applied
    if _applied:
        return True
    if not _validate_every_prepare():  # pragma: no cover - layout changed
        return False
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


def _validate_every_prepare() -> bool:
    """Make `PrepareManager.maybe_add_to_cache` hand back the key whenever it records a new
    prepared name, so the result of that Parse is validated (and a failed one forgotten)."""
    try:
        from psycopg._preparing import Prepare, PrepareManager
    except ImportError:  # pragma: no cover
        return False
    original = getattr(PrepareManager, "maybe_add_to_cache", None)
    if original is None:  # pragma: no cover
        return False
    if getattr(original, "_leadengine_fixed", False):
        return True

    def maybe_add_to_cache(self: Any, query: Any, prep: Any, name: bytes) -> Any:
        key = self.key(query)
        was_counted = prep is Prepare.SHOULD and key in self._counts
        result = original(self, query, prep, name)
        if result is None and was_counted:
            return key
        return result

    maybe_add_to_cache._leadengine_fixed = True  # type: ignore[attr-defined]
    PrepareManager.maybe_add_to_cache = maybe_add_to_cache  # type: ignore[method-assign]
    return True
