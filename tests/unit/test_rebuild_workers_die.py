"""A parallel rebuild's worker processes end with the rebuild that started them (a SIGTERM, a
killed parent, a test's timeout): each asks Linux for a signal when its parent ends, so none
is left running with an open transaction. Real spawned workers of the rebuild's own pool."""

from __future__ import annotations

import ctypes
import signal
import sys

import pytest

from engine.projections.rebuild import worker_pool

PR_GET_PDEATHSIG = 2


def parent_death_signal() -> int:
    """In a worker: the signal it gets when its parent ends (0: none)."""
    sig = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(PR_GET_PDEATHSIG, ctypes.byref(sig))
    return sig.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_every_rebuild_worker_ends_with_its_parent() -> None:
    with worker_pool(2) as pool:
        signals = [pool.submit(parent_death_signal).result(timeout=60) for _ in range(4)]
    assert signals == [signal.SIGTERM] * 4
