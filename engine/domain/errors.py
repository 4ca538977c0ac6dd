"""Domain and input errors: each says what was wrong, where, and what was expected."""

from __future__ import annotations

#: the most characters of a user's input an error echoes (a 5,000-character id is not
#: shown whole: the message stays one readable line)
ECHO_LIMIT = 80


def echoed(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` quoted as an error echoes user input: its first `limit` characters, and how
    long it was when it was longer ("'aaaa...' (5000 characters)")."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


class LeadEngineError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidEvent(LeadEngineError):
    """An input record that is not a valid event of the contract.

    `event_id` is the CloudEvent id when one could be read, `field` the dotted path of the
    offending field (or None when the record as a whole is bad), `expected` what would be valid.
    """

    def __init__(
        self,
        reason: str,
        *,
        event_id: str | None = None,
        event_type: str | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.reason = reason
        self.event_id = event_id
        self.event_type = event_type
        self.field = field
        self.expected = expected
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [self.reason]
        if self.field:
            parts.append(f"field '{self.field}'")
        if self.expected:
            parts.append(f"expected {self.expected}")
        where = f"event {self.event_id!r}: " if self.event_id else ""
        return where + "; ".join(parts)


class RulesError(LeadEngineError):
    """A rules file that does not validate; the message names the file, line and field."""


class LeadNotFound(LeadEngineError):
    def __init__(self, key: str, what: str = "key") -> None:
        self.key = key
        super().__init__(f"no lead with {what} {echoed(key)}")


class EventConflict(InvalidEvent):
    """A record whose (`source`, `id`) names a stored event with other content: not the same
    event again, not a new one. Refused and kept like any invalid record; `field` lists the
    fields that differ (names only: their values may be personal)."""


class UnmergeBeforeMerge(EventConflict):
    """A `lead.unmerged` dated before every merge (or link) of its two leads: refused and kept
    as a dead letter (counted with the conflicts), since it would take nothing back
    (docs/identity.md)."""
