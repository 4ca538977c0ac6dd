"""A snapshot's facts kept encoded until something reads them (engine/postgres/snapshots.py).

A lead of 10,000 facts unpickles in tens of milliseconds, nearly all of it building the Fact
objects, their moments and payloads, and the two indexes over them (`seen`, the walk's
`firsts`). `lead show --as-of` needs none of them: the fold of the rows after a snapshot only
appends facts and asks whether an event id is known, the totals come from the running score
and what show prints of the facts from `Shown` (engine/domain/shown.py), both kept in the
snapshot. So a snapshot holds them packed (pickled, compressed lists, one per stretch of the
lead's history: a snapshot taken from a snapshot adds the facts since as one more part, never
re-encoding the old) and these stand in for the list and the two dicts:

- `PackedFacts` knows its length, takes appends and gives the facts appended since without
  opening; anything else opens it (decodes every part, once) and acts on the list;
- `PackedSeen` takes new (source, id) entries; a read opens it;
- `PackedFirsts` answers for the ids of the facts appended since, the triggers of the lead's
  moves and decisions (kept plain: every stage change reorders the path by them) and whether an
  id is known (a set of the ids); any other read opens it, built from the facts as the walk
  builds it (each id's first fact, in order).

Opened or not, each compares equal to the plain list or dict it stands for (tests/integration/
test_asof_snapshots.py folds from snapshots and compares with the full fold).
"""

from __future__ import annotations

import gc
import pickle
import zlib
from collections.abc import Callable, Iterator
from typing import Any, cast

from engine.domain.facts import Fact


def _encode(items: list[Any], dumps: Callable[[Any], bytes]) -> bytes:
    """One part: `items` pickled and compressed on its own, so that a snapshot read that never
    opens it does not inflate it either (the snapshot's own compression finds nothing more)."""
    return zlib.compress(dumps(items), 1)


def _decode(parts: tuple[bytes, ...]) -> list[Any]:
    """The parts' items in order, the cyclic collector paused (none of them is garbage)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        out: list[Any] = []
        for part in parts:
            out.extend(pickle.loads(zlib.decompress(part)))
        return out
    finally:
        if enabled:
            gc.enable()


class PackedFacts:
    """A lead's facts: the packed ones, then the ones appended since (see the module docstring)."""

    __slots__ = ("_count", "_opened", "_parts", "_tail")

    def __init__(self, parts: tuple[bytes, ...], count: int) -> None:
        self._parts = parts
        self._count = count  # facts in `parts`
        self._tail: list[Fact] = []
        self._opened: list[Fact] | None = None

    @classmethod
    def pack(cls, facts: Any, dumps: Callable[[Any], bytes]) -> PackedFacts:
        """`facts` (a list, or one of these) as parts: a packed one keeps its parts and adds
        its tail as one more."""
        if isinstance(facts, PackedFacts) and facts._opened is None:
            tail = (_encode(facts._tail, dumps),) if facts._tail else ()
            return cls(facts._parts + tail, len(facts))
        return cls((_encode(list(facts), dumps),), len(facts))

    def __reduce__(self) -> tuple[Any, ...]:
        packed = self if self._opened is None and not self._tail else None
        if packed is None:
            raise TypeError("pack facts with PackedFacts.pack before pickling")
        return PackedFacts, (self._parts, self._count)

    @property
    def opened(self) -> bool:
        return self._opened is not None

    def open(self) -> list[Fact]:
        if self._opened is None:
            facts: list[Fact] = _decode(self._parts)
            facts.extend(self._tail)
            self._opened, self._parts, self._tail = facts, (), []
        return self._opened

    def __len__(self) -> int:
        return len(self._opened) if self._opened is not None else self._count + len(self._tail)

    def append(self, fact: Fact) -> None:
        (self._tail if self._opened is None else self._opened).append(fact)

    def __getitem__(self, index: Any) -> Any:
        if (  # the facts after the packed ones (`ScoreState.feed`): no need to open
            self._opened is None
            and isinstance(index, slice)
            and index.step is None
            and index.stop is None
            and (index.start or 0) >= self._count
        ):
            return self._tail[index.start - self._count :]
        if self._opened is None and isinstance(index, int) and -len(self._tail) <= index < 0:
            return self._tail[index]  # the fact just appended
        return self.open()[index]

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.open())

    def __reversed__(self) -> Iterator[Fact]:
        return reversed(self.open())

    def __contains__(self, item: object) -> bool:
        return item in self.open()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedFacts):
            other = other.open()
        return self.open() == other

    __hash__ = None  # type: ignore[assignment]  # as a list's

    def __getattr__(self, name: str) -> Any:  # index, count, copy...: the list's
        if name.startswith("_"):  # a slot not set yet (copy protocols): not the list's
            raise AttributeError(name)
        return getattr(self.open(), name)

    def __repr__(self) -> str:
        return f"PackedFacts({len(self)} facts, opened={self.opened})"


class _PackedDict:
    """A dict opened on first read; writes before that are kept in order and applied after."""

    __slots__ = ("_new", "_opened")

    def __init__(self) -> None:
        self._new: dict[Any, Any] = {}
        self._opened: dict[Any, Any] | None = None

    def _build(self) -> dict[Any, Any]:
        raise NotImplementedError

    @property
    def opened(self) -> bool:
        return self._opened is not None

    def open(self) -> dict[Any, Any]:
        if self._opened is None:
            built = self._build()
            built.update(self._new)  # as setting each in turn: a known key keeps its place
            self._opened, self._new = built, {}
        return self._opened

    def __setitem__(self, key: Any, value: Any) -> None:
        (self._new if self._opened is None else self._opened)[key] = value

    def __getitem__(self, key: Any) -> Any:
        return self.open()[key]

    def get(self, key: Any, default: Any = None) -> Any:
        return self.open().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.open()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.open())

    def __len__(self) -> int:
        return len(self.open())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _PackedDict):
            other = other.open()
        return self.open() == other

    __hash__ = None  # type: ignore[assignment]  # as a dict's

    def __getattr__(self, name: str) -> Any:  # items, keys, values, copy...: the dict's
        if name.startswith("_"):  # a slot not set yet (copy protocols): not the dict's
            raise AttributeError(name)
        return getattr(self.open(), name)


class PackedSeen(_PackedDict):
    """A lead's `seen` ((source, id) -> index in facts): its packed parts, then the new."""

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        super().__init__()
        self._parts = parts

    @classmethod
    def pack(cls, seen: Any, dumps: Callable[[Any], bytes]) -> PackedSeen:
        if isinstance(seen, PackedSeen) and seen._opened is None:
            new = (_encode(list(seen._new.items()), dumps),) if seen._new else ()
            return cls(seen._parts + new)
        return cls((_encode(list(seen.items()), dumps),))

    def __reduce__(self) -> tuple[Any, ...]:
        if self._opened is not None or self._new:
            raise TypeError("pack seen with PackedSeen.pack before pickling")
        return PackedSeen, (self._parts,)

    def _build(self) -> dict[Any, Any]:
        return dict(_decode(self._parts))


class PackedFirsts(_PackedDict):
    """A walk's `firsts` (event id -> its first fact) over a lead's `PackedFacts`: answers
    for the facts appended since, the `kept` ids (the triggers of moves and decisions) and
    whether an id is known (`ids`) without opening the facts."""

    __slots__ = ("_facts", "_ids", "_kept")

    def __init__(self, facts: PackedFacts, ids: frozenset[str], kept: dict[str, Fact]) -> None:
        super().__init__()
        self._facts, self._ids, self._kept = facts, ids, kept

    @classmethod
    def pack(cls, firsts: Any, facts: PackedFacts, triggers: set[str]) -> PackedFirsts:
        """`firsts` over `facts` (the lead's, packed), the `triggers` kept plain."""
        if isinstance(firsts, PackedFirsts) and firsts._opened is None:
            kept = {t: firsts.get(t) for t in triggers if t in firsts}  # may open it
            if firsts._opened is None:
                return cls(facts, firsts._ids.union(firsts._new), kept)
        kept = {t: firsts[t] for t in triggers if t in firsts}
        return cls(facts, frozenset(firsts), kept)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._opened is not None or self._new:
            raise TypeError("pack firsts with PackedFirsts.pack before pickling")
        return PackedFirsts, (self._facts, self._ids, self._kept)

    def _known(self, event_id: str) -> Fact | None:
        """The id's first fact if known without opening, else None (the caller opens)."""
        return self._new.get(event_id) or self._kept.get(event_id)

    def _build(self) -> dict[Any, Any]:
        self._new = {}  # the facts appended since are in the lead's facts: built from them
        firsts: dict[str, Fact] = {}
        for fact in self._facts:
            firsts.setdefault(fact.event_id, fact)
        return firsts

    def get(self, key: Any, default: Any = None) -> Any:
        if self._opened is None:
            if key not in self._ids and key not in self._new:
                return default
            known = self._known(key)
            if known is not None:
                return known
        return self.open().get(key, default)

    def setdefault(self, key: str, fact: Fact) -> Fact:
        if self._opened is not None:
            return cast(Fact, self._opened.setdefault(key, fact))
        known: Fact | None = self.get(key)
        if known is None:
            self._new[key] = known = fact
        return known

    def __contains__(self, key: object) -> bool:
        if self._opened is None:
            return key in self._ids or key in self._new
        return key in self._opened
