"""Event identity as CloudEvents defines it: (`source`, `id`).

The same pair with the same content is a redelivery (a no-op); with other content it is a
conflict, refused with the names of the fields that differ (never their values: they may be
personal). Content is compared field by field as flat `type` / `time` / `subject` /
`data.<name>` entries. Events stored before their source was kept (campaign costs, roster
changes of class version 1) are known by id alone and match that id from any source, as they
did when recorded; fields such an event did not keep (`NOT_KEPT`) are not compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from engine.domain.errors import EventConflict

#: (source, id); source None: recorded before the source was part of the identity
EventKey = tuple[str | None, str]
V = TypeVar("V")


class _NotKept:
    def __repr__(self) -> str:
        return "NOT_KEPT"


NOT_KEPT: Any = _NotKept()


def content(
    event_type: str, time: datetime | None, data: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The flat form compared between a stored event and a new one."""
    flat: dict[str, Any] = {"type": event_type, "time": NOT_KEPT if time is None else time}
    flat.update(extra)
    flat.update({f"data.{name}": value for name, value in data.items()})
    return flat


def differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names of the fields whose values differ (a field one side lacks differs)."""
    names = stored.keys() | new.keys()
    return sorted(n for n in names if stored.get(n) is not NOT_KEPT and stored.get(n) != new.get(n))


def lookup(seen: Mapping[EventKey, V], source: str, event_id: str) -> V | None:
    """What `seen` holds for (source, id), else for an id recorded without its source."""
    hit = seen.get((source, event_id))
    return seen.get((None, event_id)) if hit is None else hit


def check_same(
    stored: Mapping[str, Any], new: Mapping[str, Any], *, source: str, event_id: str
) -> None:
    """Raise `EventConflict` unless `new` is the stored event's content again."""
    differ = differences(stored, new)
    if differ:
        raise EventConflict(
            f"conflicts with the stored event of source {source!r} and id {event_id!r} "
            f"({stored.get('type')}): same identity, different content",
            event_id=event_id,
            event_type=str(new.get("type")),
            field=", ".join(differ),
            expected="the stored event's content again (a redelivery) or a new id",
        )
