"""The CLI's error path: settings errors name the variable, credentials never reach a line,
outages are logged when they start and end and counted (issue 14)."""

from __future__ import annotations

import re
import string
import threading
import time

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from engine import metrics
from engine.cli import failures
from engine.consumers import retry
from engine.consumers.retry import retry_transient
from engine.settings import RESERVED, Settings, SettingsError, describe, get_settings

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,54}")


@given(st.sampled_from(sorted(RESERVED)))
@settings(max_examples=50, deadline=None)
def test_a_reserved_word_is_no_schema(word: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_schema=word)
    assert describe(caught.value).startswith(f"LEADENGINE_DATABASE_SCHEMA={word!r}: ")


@given(st.from_regex(IDENTIFIER, fullmatch=True).filter(lambda w: w not in RESERVED))
@settings(max_examples=100, deadline=None)
def test_every_other_lower_case_name_is_a_schema(name: str) -> None:
    assert Settings(database_schema=name).database_schema == name


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LEADENGINE_BATCH_SIZE", "0", "LEADENGINE_BATCH_SIZE='0': not valid; set it to a whole"),
        (
            "LEADENGINE_LOG_FORMAT",
            "xml",
            "LEADENGINE_LOG_FORMAT='xml': not valid; set it to console",
        ),
        ("LEADENGINE_DATABASE_SCHEMA", "a-b", "LEADENGINE_DATABASE_SCHEMA='a-b': not valid"),
        (
            "LEADENGINE_DATABASE_URL",
            "mysql://u:pw1234@h/db",
            "LEADENGINE_DATABASE_URL=***: a mysql",
        ),
        ("LEADENGINE_DATABASE_URL", "nonsense", "LEADENGINE_DATABASE_URL=***: not a URL"),
        ("LEADENGINE_RULES_FILE", "", "LEADENGINE_RULES_FILE='': set but empty"),
        ("LEADENGINE_CONNECT_TIMEOUT_S", "0", "LEADENGINE_CONNECT_TIMEOUT_S='0': not valid"),
    ],
)
def test_a_bad_setting_names_the_variable_not_the_field(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    line = str(caught.value)
    assert line.startswith(expected), line
    assert "\n" not in line and "pw1234" not in line
    assert "database_schema" not in line and "batch_size" not in line


PASSWORDS = st.text(
    alphabet=string.ascii_letters + string.digits + "!$%&()*+,-.;=_~", min_size=1, max_size=30
)


@given(PASSWORDS, st.sampled_from(["postgresql", "postgres", "mysql", "kafka+ssl"]))
@settings(max_examples=200, deadline=None)
def test_a_url_password_is_masked_wherever_it_is_echoed(password: str, scheme: str) -> None:
    url = f"{scheme}://user:{password}@host:5432/db"
    line = failures.mask(f'missing "=" after "{url}" in connection info string')
    assert f"{scheme}://user:***@host:5432/db" in line


@given(PASSWORDS)
@settings(max_examples=100, deadline=None)
def test_a_conninfo_password_is_masked(password: str) -> None:
    line = failures.mask(f"host=h password={password} port=abc")
    assert line == "host=h password=*** port=abc"


def test_secret_settings_are_masked_even_in_odd_places(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADENGINE_DATABASE_URL", "postgresql://u:hunter22@h/db")
    monkeypatch.setenv("LEADENGINE_KAFKA_SASL_PASSWORD", "kafkapw99")
    text = failures.mask("auth failed with hunter22 (and kafkapw99)")
    assert "hunter22" not in text and "kafkapw99" not in text


def test_the_line_of_a_connection_failure_names_the_setting() -> None:
    exc = psycopg.OperationalError('connection failed: FATAL:  database "x"\n\tdoes not exist')
    line = failures.report(exc)
    assert line.startswith("LEADENGINE_DATABASE_URL: ") and "\n" not in line


def test_an_outage_is_logged_when_it_starts_and_ends_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(retry.OUTAGES, "database", retry.Outage("database"))
    failures_left = [3]
    now = [0.0]

    def flaky() -> str:
        if failures_left[0]:
            failures_left[0] -= 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return "ok"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    before = metrics.retries.labels("database")._value.get()
    outages = metrics.outages.labels("database")._value.get()
    with capture_logs() as logs:
        result = retry_transient(
            flaky, what="record batch", sleep=sleep, clock=lambda: now[0], first_wait=3.0
        )
    assert result == "ok"
    events = [entry["event"] for entry in logs]
    assert events[0] == "outage started; retrying" and events[-1] == "outage ended"
    assert logs[0]["what"] == "database" and logs[0]["error"].startswith("record batch: ")
    assert "outage continues; retrying" in events  # 3 s, 5 s waits: a line every few seconds
    assert logs[-1]["attempts"] == 3 and logs[-1]["down_s"] == 13.0
    assert metrics.retries.labels("database")._value.get() - before == 3
    assert metrics.outages.labels("database")._value.get() - outages == 1


class FakePool:
    def __init__(self) -> None:
        self.stats = {"connections_num": 2, "connections_errors": 0}

    def get_stats(self) -> dict[str, int]:
        return dict(self.stats)


def test_a_pools_failed_connections_are_the_outage_it_hides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """eventsourcing retries inside each call: the pool's counters show the outage anyway."""
    monkeypatch.setitem(retry.OUTAGES, "database", retry.Outage("database"))
    pool, stop = FakePool(), threading.Event()
    before = metrics.retries.labels("database")._value.get()
    with capture_logs() as logs:
        watcher = threading.Thread(target=retry.watch_pool, args=(pool, stop, 0.01))
        watcher.start()
        pool.stats = {"connections_num": 6, "connections_errors": 4}  # four failed, none made
        deadline = time.monotonic() + 5
        while retry.OUTAGES["database"].started is None and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.stats = {"connections_num": 7, "connections_errors": 4}  # one made: back
        while retry.OUTAGES["database"].started is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        watcher.join()
    assert [e["event"] for e in logs] == ["outage started; retrying", "outage ended"]
    assert logs[-1]["attempts"] == 4
    assert metrics.retries.labels("database")._value.get() - before == 4


def test_a_non_transient_error_is_not_retried() -> None:
    def broken() -> None:
        raise ValueError("a bug")

    with capture_logs() as logs, pytest.raises(ValueError):
        retry_transient(broken, what="a bug", sleep=lambda _: None)
    assert logs == []


@pytest.mark.parametrize(
    "error",
    [psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown, psycopg.errors.CannotConnectNow],
)
def test_a_connection_the_server_ended_says_run_again_not_check_the_url(error: type) -> None:
    """A hostile trial ended a rebuild's connection (pg_terminate_backend): the line said to
    check the URL, which was right; a server that ended the connection asks for a rerun."""
    line = failures.expected(error("terminating connection due to administrator command"))
    assert line is not None
    assert "the server ended the connection" in line and "run it again" in line
    assert "check the URL" not in line
    refused = failures.expected(psycopg.OperationalError("connection refused"))
    assert refused is not None and "check the URL" in refused
