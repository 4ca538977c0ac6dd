"""Bad input is refused with a reason and kept byte for byte; good input still lands."""

from __future__ import annotations

from engine.consumers.lines import ingest_lines
from engine.runtime import Runtime
from tests.factory import line, raw

BAD = [
    b'{"specversion": "1.0", "id": "x1"',
    line({**raw("touch.page_viewed", data={"channel": "web"}, id="x2"), "type": "touch.nope"}),
    line({**raw("touch.page_viewed", data={"channel": "web"}, id="x3"), "time": "noon"}),
    line(raw("touch.page_viewed", data={}, id="x4")),
    b"[]",
]


def test_bad_lines_are_kept_with_reasons_and_good_ones_recorded(runtime: Runtime) -> None:
    good = [
        line(raw("lead.captured", "k9", {"email": "a@b.io"}, id="g1")),
        line(raw("touch.page_viewed", "k9", {"channel": "web"}, id="g2")),
    ]
    report = ingest_lines(
        [good[0], *BAD, good[1], b"   "],
        origin="file:t.jsonl",
        app=runtime.app,
        deadletters=runtime.deadletters,
        batch_size=1,
    )
    assert report.as_dict() == {
        "lines": 7,
        "accepted": 2,
        "duplicates": 0,
        "ignored": 0,
        "rejected": 5,
        "conflicts": 0,
        "unknown_fields": 0,
    }
    kept = {d["origin"]: d for d in runtime.deadletters.latest(10)}
    assert set(kept) == {f"file:t.jsonl:{n}" for n in range(2, 7)}
    assert kept["file:t.jsonl:2"]["raw"] == BAD[0].decode()
    assert "malformed JSON" in kept["file:t.jsonl:2"]["error"]
    assert kept["file:t.jsonl:3"]["field"] == "type" and kept["file:t.jsonl:3"]["event_id"] == "x2"
    assert kept["file:t.jsonl:4"]["field"] == "time"
    assert kept["file:t.jsonl:5"]["field"] == "data.channel"
    # the event id and type, when they were read, are stored and read back (None otherwise)
    assert {o: (d["event_id"], d["event_type"]) for o, d in kept.items()} == {
        "file:t.jsonl:2": (None, None),
        "file:t.jsonl:3": ("x2", "touch.nope"),
        "file:t.jsonl:4": ("x3", "touch.page_viewed"),
        "file:t.jsonl:5": ("x4", "touch.page_viewed"),
        "file:t.jsonl:6": (None, None),
    }
    assert len(runtime.app.get_lead("k9").facts) == 2
