"""What every benchmark here shares."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB (each phase runs in its own process)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
