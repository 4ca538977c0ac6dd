"""Records for the poison-record properties: valid ones from the published JSON Schemas in
schemas/ (hypothesis-jsonschema), and hostile mutations of them.

hypothesis-jsonschema 0.23 draws objects through a Hypothesis internal (`many.more()`) that
Hypothesis 6.170 no longer has, so objects are composed here, property by property, from the
schemas' own property schemas; every leaf (patterns, formats, anyOf, bounds) is drawn by
`hypothesis_jsonschema.from_schema`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from engine.domain.contract import EVENT_TYPES

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
# the inbound contract's schemas (schemas/ also holds the relay's outbound ones:
# engine/domain/outbound.py)
TYPES = sorted(EVENT_TYPES)
assert all((SCHEMAS / f"{t}.json").is_file() for t in TYPES), "run: leadengine schemas export"

#: timestamps the issue reproduced plus every edge of the documented range
ODD_TIMES: list[Any] = [
    "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:30:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:30:00+01:00",
    "2099-12-31T23:59:59Z",
    "2099-12-31T23:59:59-05:00",
    "2100-01-01T00:00:00Z",
    "2026-02-30T09:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T09:00:00",
    "2026-03-01 09:00:00Z",
    "2026-03-01T09:00:00.1234567891Z",
    "2026-03-01T09:00:00+23:59",
    "1700000000",
    1700000000,
    1.7e9,
    -1,
    None,
    True,
    [],
    {},
    "",
]
ODD_DATES: list[Any] = [
    "0001-01-01",
    "9999-12-31",
    "1969-12-31",
    "1970-01-01",
    "2099-12-31",
    "2100-01-01",
    "2026-02-30",
    "20260301",
    20260301,
    "2026-03-01T00:00:00Z",
    None,
]
#: numbers for amounts and counts: huge, negative, fractional, not numbers at all
ODD_NUMBERS: list[Any] = [
    -1,
    -0.01,
    0,
    0.001,
    0.5,
    10**12,
    10**12 + 0.25,
    10**15 - 1,
    10**15,
    2**31 - 1,
    2**31,
    2**63,
    10**39,
    1e300,
    "999999999999999.99",
    "1000000000000000",
    "1E+15",
    "1e3",
    "-0",
    "0.005",
    "NaN",
    "Infinity",
    "-Infinity",
    " 5 ",
    "",
    True,
    None,
    [1],
]
NUMERIC_FIELDS = (
    "amount",
    "employees",
    "annual_revenue",
    "capacity",
    "duration_seconds",
    "schema_version",
)
BLANKS = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", max_size=4)
#: characters PostgreSQL text cannot hold (NUL, lone surrogates) and control characters it can
POISON_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff", "\udc80"])
CONTROL_CHARS = st.sampled_from([chr(c) for c in (*range(1, 32), 127)])
EXTENSION_NAMES = st.from_regex(r"[a-z][a-z0-9]{0,19}", fullmatch=True).filter(
    lambda n: (
        n not in {"specversion", "id", "source", "type", "subject", "time", "data"}
        and n not in {"datacontenttype", "dataschema", "account"}
    )
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@cache
def schema(event_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{event_type}.json").read_text("utf-8"))
    return loaded


def _object(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object of `node`'s properties: the required ones always, the others sometimes."""
    required = set(node.get("required", ()))
    props = {  # `false`: a property the type must not have (`account` off lead events)
        name: _value(sub) for name, sub in node.get("properties", {}).items() if sub is not False
    }
    return st.fixed_dictionaries(
        {k: s for k, s in props.items() if k in required},
        optional={k: s for k, s in props.items() if k not in required},
    )


def _value(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    if node.get("type") == "object" and "properties" in node:
        return _object(node)
    return from_schema(node)


#: instants inside the documented range, at any UTC offset a timestamp may carry
IN_RANGE_TIMES = st.builds(
    lambda at, minutes: (at.astimezone(timezone(timedelta(minutes=minutes)))).isoformat(),
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(-18 * 60 + 1, 18 * 60 - 1),
)


@st.composite
def valid_event(draw: st.DrawFn, prefix: str = "", event_type: str = "") -> dict[str, Any]:
    """A record drawn from the published schema of its type (its `time` usually in range).

    `prefix` keeps one example's ids and leads apart from another's; a few subjects per
    prefix give leads several events."""
    chosen = event_type or draw(st.sampled_from(TYPES))
    event: dict[str, Any] = draw(_object(schema(chosen)))
    if prefix:
        event["id"] = f"{prefix}{draw(st.integers(0, 10**6))}-{event['id'][:150]}"
        if draw(st.booleans()):
            event["subject"] = f"{prefix}{draw(st.sampled_from('abc'))}"
        else:
            event["subject"] = prefix + event["subject"][:150]
    if draw(st.integers(0, 4)):  # the schema's date-time spans years 0001-9999: mostly keep to ours
        event["time"] = draw(IN_RANGE_TIMES)
    if draw(st.booleans()):
        event.update(draw(st.dictionaries(EXTENSION_NAMES, JSON_VALUES, max_size=3)))
    return event


def _strings(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every string value in `obj`, and of every key (marked with a final None)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, str):
        out.append(path)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*path, key, None))
            out.extend(_strings(value, (*path, key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.extend(_strings(value, (*path, i)))
    return out


def _poke(obj: Any, path: tuple[Any, ...], change: Any) -> None:
    """Apply `change` (old -> new) to the string or key at `path` in place."""
    *parents, last = path
    if last is None:  # a key
        *parents, key = parents
        holder = obj
        for p in parents:
            holder = holder[p]
        holder[change(key)] = holder.pop(key)
        return
    holder = obj
    for p in parents:
        holder = holder[p]
    holder[last] = change(holder[last])


@st.composite
def mutated_event(draw: st.DrawFn, prefix: str = "") -> dict[str, Any] | bytes:
    """A valid record with one hostile change: a dict, or raw bytes for what JSON can't say."""
    event = draw(valid_event(prefix))
    kind = draw(
        st.sampled_from(
            [
                "poison",
                "control",
                "number",
                "time",
                "date",
                "blank",
                "deep",
                "digits",
                "drop",
                "type",
                "raw",
            ]
        )
    )
    if kind in ("poison", "control"):
        paths = _strings(event)
        path = draw(st.sampled_from(paths))
        char = draw(POISON_CHARS if kind == "poison" else CONTROL_CHARS)
        at = draw(st.integers(0, 3))
        _poke(event, path, lambda s: s[:at] + char + s[at:])
    elif kind == "number":
        own = schema(event["type"])["properties"]["data"]["properties"]
        fields = [f for f in NUMERIC_FIELDS if f in own and f != "schema_version"]
        event["data"][draw(st.sampled_from(fields or ["schema_version"]))] = draw(
            st.sampled_from(ODD_NUMBERS)
        )
    elif kind == "time":
        event["time"] = draw(st.sampled_from(ODD_TIMES))
    elif kind == "date":
        event = draw(valid_event(prefix, "campaign.cost_recorded"))
        event["data"][draw(st.sampled_from(["period_start", "period_end"]))] = draw(
            st.sampled_from(ODD_DATES)
        )
    elif kind == "blank":
        event[draw(st.sampled_from(["subject", "id", "source"]))] = draw(BLANKS)
    elif kind == "deep":
        depth = draw(st.sampled_from([3, 28, 29, 30, 31, 32, 33, 1000, 100_000]))
        text = json.dumps({**event, "ext": 0})
        return text.replace('"ext": 0', '"ext": ' + "[" * depth + "]" * depth).encode()
    elif kind == "digits":
        digits = draw(st.sampled_from([30, 40, 41, 4300, 4301, 5000]))
        own = schema(event["type"])["properties"]["data"]["properties"]
        field = draw(st.sampled_from(["ext", *(f for f in NUMERIC_FIELDS if f in own)]))
        text = json.dumps({**event, "ext": 0} if field == "ext" else event)
        if field == "ext":
            return text.replace('"ext": 0', '"ext": ' + "9" * digits).encode()
        event["data"][field] = 0
        text = json.dumps(event)
        return text.replace(f'"{field}": 0', f'"{field}": ' + "9" * digits).encode()
    elif kind == "drop":
        event.pop(draw(st.sampled_from(sorted(event))), None)
    elif kind == "type":
        event["type"] = draw(st.sampled_from([*TYPES, "touch.teleported", "", 7]))
    else:  # raw text JSON cannot carry: unescaped control characters, bad UTF-8, NaN
        text = json.dumps(event)
        junk = draw(
            st.sampled_from(
                [b"\x01", b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"NaN", b"\x00", b"\\u0000"]
            )
        )
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode("utf-8", "surrogatepass") + junk + text[cut:].encode()
    return event


def encode(record: dict[str, Any] | bytes) -> bytes:
    """One JSON line (dicts as json.dumps writes them: non-ASCII and NUL escaped)."""
    return record if isinstance(record, bytes) else json.dumps(record).encode()


@st.composite
def records(draw: st.DrawFn, max_size: int = 12) -> list[dict[str, Any] | bytes]:
    """Valid and mutated records of one example, under a prefix of its own."""
    prefix = draw(st.uuids()).hex[:10] + "-"
    either = st.one_of(valid_event(prefix), mutated_event(prefix))
    return draw(st.lists(either, min_size=1, max_size=max_size))
