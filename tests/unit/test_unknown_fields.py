"""Evolution: unknown `data` fields and extension attributes are kept (sealed, never read by
rules) and counted in `keep` mode, refused with the field named in `reject` mode."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.aggregates.lead import Lead, Recorded
from engine.consumers.lines import ingest_lines
from engine.domain.contract import parse_event, validate_event
from engine.domain.errors import EventConflict, InvalidEvent, RulesError
from engine.domain.rules import Rules, load_rules
from engine.domain.scoring import score
from engine.services.application import LeadEngine
from engine.services.history import history_rows
from tests.conftest import POPO_ENV
from tests.factory import line, raw

SECRET = "spring-sale-7f3a"


def _with_unknown(type_: str, data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    obj = raw(type_, "k-1", {**data, "utm_term": SECRET}, **kw)
    obj["partnerref"] = "p-9"  # a CloudEvents extension attribute
    return obj


def _strict(rules: Rules) -> Rules:
    contract = rules.contract.model_copy(update={"unknown_fields": "reject"})
    return rules.model_copy(update={"contract": contract})


def test_keep_mode_accepts_and_sets_the_unknown_aside() -> None:
    env = validate_event(_with_unknown("touch.page_viewed", {"channel": "web"}))
    assert env.data == {"channel": "web", "schema_version": 1}
    assert env.kept == {"data": {"utm_term": SECRET}, "attributes": {"partnerref": "p-9"}}
    assert env.unknown_count == 2


def test_reject_mode_refuses_the_unknown_data_field_by_name() -> None:
    obj = _with_unknown("touch.page_viewed", {"channel": "web"}, id="e-7")
    with pytest.raises(InvalidEvent) as info:
        parse_event(line(obj), unknown_fields="reject")
    assert info.value.field == "data.utm_term" and info.value.event_id == "e-7"
    assert "no such field" in (info.value.expected or "")
    del obj["data"]["utm_term"]  # extension attributes are never refused (CloudEvents)
    assert parse_event(line(obj), unknown_fields="reject").kept == {}


def test_a_wrong_type_on_a_known_field_is_still_refused_in_keep_mode() -> None:
    obj = _with_unknown("touch.call_logged", {"channel": "sales", "direction": "in"})
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj)
    assert info.value.field in {"data.direction", "data.outcome"}


def test_the_rules_file_chooses_the_mode(tmp_path: Any) -> None:
    assert load_rules().contract.unknown_fields == "keep"
    text = load_rules_text().replace("unknown_fields: keep", "unknown_fields: reject")
    (tmp_path / "strict.yaml").write_text(text)
    assert load_rules(tmp_path / "strict.yaml").contract.unknown_fields == "reject"
    (tmp_path / "bad.yaml").write_text(text.replace("unknown_fields: reject", "unknown_fields: x"))
    with pytest.raises(RulesError, match="unknown_fields"):
        load_rules(tmp_path / "bad.yaml")


def load_rules_text() -> str:
    from importlib import resources

    return resources.files("engine").joinpath("default_rules.yaml").read_text("utf-8")


def _story(extra: bool) -> list[dict[str, Any]]:
    made = _with_unknown if extra else (lambda t, d, **kw: raw(t, "k-1", d, **kw))
    return [
        made("lead.captured", {"email": "ana@acme.example", "country": "US"}, id="s1"),
        made("lead.profile_updated", {"industry": "software", "employees": 900}, id="s2"),
        made("touch.webinar_attended", {"channel": "webinar"}, id="s3", days=1),
        made("touch.form_submitted", {"channel": "web", "form": "demo"}, id="s4", days=2),
    ]


def test_kept_fields_are_counted_stored_sealed_and_never_scored(rules: Rules) -> None:
    plain, kept = (LeadEngine(rules=rules, env=POPO_ENV) for _ in range(2))
    plain.ingest([validate_event(e) for e in _story(extra=False)])
    result = kept.ingest([validate_event(e) for e in _story(extra=True)])
    assert result.accepted == 4 and result.unknown_fields == 8
    a, b = plain.get_lead("k-1"), kept.get_lead("k-1")
    assert (a.stage, a.reached, a.owner) == (b.stage, b.reached, b.owner)
    assert score(a.facts, rules, a.clock) == score(b.facts, rules, b.clock)
    assert [f.data for f in a.facts] == [f.data for f in b.facts]
    assert all(f.extra == {"data": {"utm_term": SECRET}, "attributes": {"partnerref": "p-9"}}
               for f in b.facts)  # fmt: skip
    stored = list(kept.recorder.select_events(kept.lead_id("k-1")))
    assert not any(SECRET.encode() in s.state or b"partnerref" in s.state for s in stored)
    assert not any(b"extra" in s.state for s in plain.recorder.select_events(plain.lead_id("k-1")))
    # read back from the store (not the aggregate cache): opened with the lead's key
    facts = [e for e in kept.lead_events("k-1") if isinstance(e, Lead.FactRecorded)]
    assert [f.extra["data"] for f in facts] == [{"utm_term": SECRET}] * 4
    assert kept.sealed_mapper.to_domain_event(stored[1]).extra == {"_erased": True}
    details = [r["detail"] for r in history_rows(kept.lead_events("k-1"), rules)]
    assert any("+kept: attributes.partnerref, data.utm_term" in d for d in details)
    assert not any(SECRET in d for d in details)  # names only: values are personal


def test_forget_takes_the_kept_fields_with_it(memory_app: LeadEngine) -> None:
    memory_app.ingest([validate_event(e) for e in _story(extra=True)])
    memory_app.forget("k-1", reason="ticket 1", by="ops", at=datetime(2026, 4, 1, tzinfo=UTC))
    lead = memory_app.get_lead("k-1")
    assert all(f.extra is None for f in lead.facts)
    sealed = memory_app.sealed_mapper.to_domain_event(
        next(iter(memory_app.recorder.select_events(memory_app.lead_id("k-1"), gt=1)))
    )
    assert sealed.extra == {"_erased": True}
    later = validate_event(_with_unknown("touch.page_viewed", {"channel": "web"}, id="s9"))
    assert memory_app.ingest([later]).accepted == 1  # privacy.after_erasure: strip
    assert memory_app.get_lead("k-1").facts[-1].extra is None
    stored = memory_app.recorder.select_events(memory_app.lead_id("k-1"))
    assert not any(SECRET.encode() in s.state for s in stored)


def test_after_forget_drop_ignores_an_event_carrying_unknown_fields(rules: Rules) -> None:
    privacy = rules.privacy.model_copy(update={"after_erasure": "drop"})
    app = LeadEngine(rules=rules.model_copy(update={"privacy": privacy}), env=POPO_ENV)
    app.ingest([validate_event(e) for e in _story(extra=False)])
    app.forget("k-1", reason="ticket 2", by="ops", at=datetime(2026, 4, 1, tzinfo=UTC))
    later = _with_unknown("touch.page_viewed", {"channel": "web"}, id="s9")
    assert app.ingest([validate_event(later)]).ignored == 1


def test_redelivery_compares_kept_data_fields_but_not_extension_attributes(
    memory_app: LeadEngine,
) -> None:
    first = _with_unknown("touch.page_viewed", {"channel": "web"}, id="r1")
    memory_app.ingest([validate_event(first)])
    again = {**json.loads(json.dumps(first)), "partnerref": "another-hop"}
    assert memory_app.ingest([validate_event(again)]).duplicates == 1
    changed = json.loads(json.dumps(first))
    changed["data"]["utm_term"] = "other"
    result = memory_app.ingest([validate_event(changed)])
    assert result.conflicts == 1
    error: EventConflict = result.rejected[0][1]
    assert error.field == "extra.data.utm_term" and "other" not in str(error)
    assert memory_app.get_lead("k-1").facts[0].extra is not None
    assert [o for _, o in result.outcomes] == [Recorded.CONFLICT]


def test_ingest_lines_counts_in_keep_mode_and_dead_letters_in_reject_mode(rules: Rules) -> None:
    lines = [line(e) for e in _story(extra=True)]
    kept: list[Any] = []

    class Letters:
        def add(self, letters: list[Any]) -> None:
            kept.extend(letters)

    app = LeadEngine(rules=rules, env=POPO_ENV)
    report = ingest_lines(lines, origin="t", app=app, deadletters=Letters())  # type: ignore[arg-type]
    assert (report.accepted, report.unknown_fields, report.rejected) == (4, 8, 0)
    strict = LeadEngine(rules=_strict(rules), env=POPO_ENV)
    report = ingest_lines(lines, origin="t", app=strict, deadletters=Letters())  # type: ignore[arg-type]
    assert (report.accepted, report.unknown_fields, report.rejected) == (0, 0, 4)
    assert {letter.error.field for letter in kept} == {"data.utm_term"}


def test_on_a_campaign_cost_they_are_counted_but_not_stored(memory_app: LeadEngine) -> None:
    data = {
        "campaign": "spring",
        "channel": "ads",
        "amount": "10.00",
        "currency": "USD",
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
        "utm_term": SECRET,
    }
    result = memory_app.ingest([validate_event(raw("campaign.cost_recorded", "spring", data))])
    assert (result.accepted, result.unknown_fields) == (1, 1)
    stored = [s.state for s in memory_app.recorder.select_notifications(1, 100)]
    assert stored and not any(SECRET.encode() in s for s in stored)
