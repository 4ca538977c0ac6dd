"""First-order Markov removal effect, solved exactly from the absorbing chain (no simulation).

States: start, one per channel (or campaign, content), and the absorbing conversion and null.
Transition probabilities are the observed frequencies over all paths (converting paths end in
conversion, the others in null). P(conversion from start) solves (I - Q) x = b; removing a
channel redirects every transition into it to null. Removal effect = 1 - P(without) / P.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the chain is absorbing: I - Q is regular)."""
    n = len(b)
    m = [[*row[:], b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-15:
            raise ArithmeticError("transition matrix is singular (no path is absorbed)")
        m[col], m[pivot] = m[pivot], m[col]
        p = m[col][col]
        for r in range(col + 1, n):
            f = m[r][col] / p
            if f:
                row, top = m[r], m[col]
                for c in range(col, n + 1):
                    row[c] -= f * top[c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        s = m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))
        x[r] = s / m[r][r]
    return x


class Chain:
    """Transition counts of many paths; `conversion_probability` with some states removed."""

    def __init__(self, paths: Iterable[tuple[Sequence[str], bool]] = ()) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        for keys, converted in paths:
            self.add(keys, converted)

    def add(self, keys: Sequence[str], converted: bool, times: int = 1) -> None:
        """Count one more path's transitions (a report streams its paths in: counts only);
        `times` such paths at once (the counts are integers: the same as one at a time)."""
        counts = self.counts
        a = START
        for b in (*keys, CONVERSION if converted else NULL):
            counts[a][b] += times
            a = b

    @property
    def states(self) -> list[str]:
        return [START, *sorted(s for s in self.counts if s != START)]

    @property
    def channels(self) -> list[str]:
        return self.states[1:]

    def conversion_probability(self, removed: str | None = None) -> float:
        states = [s for s in self.states if s != removed]
        index = {s: i for i, s in enumerate(states)}
        n = len(states)
        a = [[0.0] * n for _ in range(n)]
        b = [0.0] * n
        for s in states:
            i = index[s]
            a[i][i] += 1.0
            row = self.counts[s]
            total = sum(row.values())
            for target, count in row.items():
                p = count / total
                if target == CONVERSION:
                    b[i] += p
                elif target in index:
                    a[i][index[target]] -= p
                # a removed state (or null) absorbs nothing
        return _solve(a, b)[0]

    def removal_effects(self) -> dict[str, float]:
        base = self.conversion_probability()
        if base <= 0:
            return {c: 0.0 for c in self.channels}
        return {c: 1.0 - self.conversion_probability(c) / base for c in self.channels}
