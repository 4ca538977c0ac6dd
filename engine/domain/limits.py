"""What the contract accepts is what storage and every projection can hold (docs/contract.md).

Checked at the door, before and right after `json.loads`, so that no accepted event can later
stop ingest, a projection or a report: PostgreSQL text holds neither U+0000 nor lone UTF-16
surrogates; the read model stores amounts as numeric(17,2) and counts as int4; datetime
arithmetic (as-of replay, decay, SLA business hours) overflows near years 1 and 9999; and
`json.loads` recurses per nesting level and refuses integers over 4,300 digits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from engine.domain.errors import InvalidEvent

#: deepest nesting of arrays and objects in one record (a CloudEvent needs 3)
MAX_DEPTH = 32
#: longest number literal, in characters (an amount needs 18)
MAX_NUMBER_CHARS = 40
#: event `time`: from this instant (inclusive) ...
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
#: ... to this one (exclusive)
TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)
#: calendar dates (period_start, period_end), inclusive
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(2099, 12, 31)
#: amounts: 0 <= amount < AMOUNT_LIMIT, at most AMOUNT_DECIMALS decimals (numeric(17,2))
AMOUNT_LIMIT = Decimal(10) ** 15
AMOUNT_DECIMALS = 2
#: counts (employees, capacity, durations, schema versions): the read model's int4
INT_MAX = 2**31 - 1

#: a JSON string, or an unterminated one up to the end (so a scan never restarts inside it)
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NUMBER_RUN = re.compile(rf"[-+0-9.eE]{{{MAX_NUMBER_CHARS + 1},}}")
_BRACKET = re.compile(r"[\[\]{}]")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def decode_text(raw: bytes | str) -> str:
    """The record as text: UTF-8 (or what RFC 4627 detection finds), never lone surrogates."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode(json.detect_encoding(raw))
    except (UnicodeDecodeError, LookupError) as exc:
        raise InvalidEvent(
            f"not valid text ({exc.__class__.__name__}: {exc})", expected="UTF-8 JSON"
        ) from None


def check_shape(text: str) -> None:
    """Nesting depth and number-literal length, from the raw text (strings blanked out)."""
    if (
        text.count("[") + text.count("{") <= MAX_DEPTH and _NUMBER_RUN.search(text) is None
    ):  # brackets and runs in strings counted too: an upper bound on both, no blanking needed
        return
    bare = _STRING.sub('""', text)
    long_number = _NUMBER_RUN.search(bare)
    if long_number:
        raise InvalidEvent(
            f"number literal of {len(long_number.group(0))} characters",
            expected=f"numbers of at most {MAX_NUMBER_CHARS} characters",
        )
    depth = 0
    for match in _BRACKET.finditer(bare):
        depth += 1 if match.group(0) in "[{" else -1
        if depth > MAX_DEPTH:
            raise InvalidEvent(
                f"JSON nested deeper than {MAX_DEPTH} levels",
                expected=f"at most {MAX_DEPTH} levels of arrays and objects",
            )


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} does not fit a double")
    return value


def loads(text: str) -> Any:
    """`json.loads` without NaN/Infinity and without numbers that overflow a double."""
    return json.loads(text, parse_constant=_constant, parse_float=_finite)


def _walk(obj: Any) -> Iterator[tuple[str, str]]:
    """(path, string) for every string in `obj`, keys included; refuses too deep a value."""
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise InvalidEvent(
                    f"nested deeper than {MAX_DEPTH} levels",
                    field=path or None,
                    expected=f"at most {MAX_DEPTH} levels of arrays and objects",
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str):
                    yield name, key
                stack.append((name, item, depth + 1))


def check_strings(obj: Any) -> None:
    """No string anywhere (envelope, extensions, data, keys) holds U+0000 or a lone surrogate."""
    for path, value in _walk(obj):
        bad = _UNSAFE.search(value)
        if bad:
            char = "U+0000 (NUL)" if bad.group(0) == "\x00" else f"U+{ord(bad.group(0)):04X}"
            raise InvalidEvent(
                f"text holds {char}, which PostgreSQL cannot store",
                event_id=printable(obj.get("id")) if isinstance(obj, dict) else None,
                field=printable(path) or None,
                expected="text without NUL characters or unpaired UTF-16 surrogates",
            )


def strings_safe(text: str) -> bool:
    """True when no string `loads(text)` yields can hold U+0000 or a lone surrogate (neither
    is in the text and no `\\u` escape could make one): `check_strings` can be skipped."""
    return "\\u" not in text and _UNSAFE.search(text) is None


def printable(value: Any) -> str | None:
    """`value` if it is safe text to store and send in headers; escaped if not; None if no str."""
    if not isinstance(value, str):
        return None
    if _UNSAFE.search(value):
        return value.encode("unicode_escape").decode("ascii")
    return value


def check_time(value: Any) -> Any:
    """`time` is an RFC 3339 string (never a number) in [TIME_MIN, TIME_MAX)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("time must be an RFC 3339 string")
    return value


def check_time_range(value: datetime) -> datetime:
    # comparing aware datetimes never overflows; converting them near year 1 or 9999 does
    if not TIME_MIN <= value < TIME_MAX:
        raise ValueError(
            f"time out of range: from {TIME_MIN:%Y-%m-%d} (inclusive) to {TIME_MAX:%Y-%m-%d}"
        )
    return value.astimezone(UTC)


def check_date(value: Any) -> Any:
    """A calendar date is a YYYY-MM-DD string in [DATE_MIN, DATE_MAX]."""
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and _DATE.fullmatch(value):
        day = date.fromisoformat(value)
    else:
        raise ValueError("date must be a YYYY-MM-DD string")
    if not DATE_MIN <= day <= DATE_MAX:
        raise ValueError(f"date out of range: from {DATE_MIN} to {DATE_MAX}")
    return day
