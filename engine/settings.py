"""The one place that reads the environment: every knob is a `LEADENGINE_*` variable."""

from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.domain.errors import LeadEngineError

PREFIX = "LEADENGINE_"

# PostgreSQL keywords that are not "unreserved" (pg_get_keywords() catcode R, T or C, 15-18):
# eventsourcing writes the schema unquoted (`order.stored_event_uuid`), so these cannot be one.
_RESERVED = """
    all analyse analyze and any array as asc asymmetric authorization between bigint binary bit
    boolean both case cast char character check coalesce collate collation column concurrently
    constraint create cross current_catalog current_date current_role current_schema current_time
    current_timestamp current_user dec decimal default deferrable desc distinct do else end except
    exists extract false fetch float for foreign freeze from full grant greatest group grouping
    having ilike in initially inner inout int integer intersect interval into is isnull join json
    json_array json_arrayagg json_exists json_object json_objectagg json_query json_scalar
    json_serialize json_table json_value lateral leading least left like limit localtime
    localtimestamp merge_action national natural nchar none normalize not notnull null nullif
    numeric offset on only or order out outer overlaps overlay placing position precision primary
    real references returning right row select session_user setof similar smallint some
    substring symmetric system_user table tablesample then time timestamp to trailing treat trim
    true union unique user using values varchar variadic verbose when where window with
    xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
    xmlserialize xmltable"""
RESERVED = frozenset(_RESERVED.split())

# What a valid value looks like, for the one-line error naming the variable.
EXPECTED = {
    "database_url": "a postgresql:// URL (e.g. postgresql://leadengine@db.internal:5432/leads), "
    "or unset it for the embedded server",
    "database_schema": "a lower-case SQL name of up to 55 characters (a-z, 0-9, _), not a "
    "reserved word",
    "log_format": "console or json",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "batch_size": "a whole number from 1 to 100000",
    "cache_size": "a whole number from 1 to 1000000",
    "cache_facts": "a whole number from 1 to 100000000",
    "connect_timeout_s": "seconds, from 1 to 600",
    "kafka_security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    "metrics_port": "a port number from 1 to 65535",
}
SECRET_FIELDS = ("database_url", "master_key", "kafka_sasl_password")


class Settings(BaseSettings):
    """Engine settings; secrets are `SecretStr` so they never reach a log line."""

    model_config = SettingsConfigDict(env_prefix="LEADENGINE_", frozen=True, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL; unset means an embedded server under `home`.",
    )
    # 55: room for the `_rebuild` / `_read` / `_demo` schemas made beside it (63 at most)
    database_schema: str = Field(default="leadengine", pattern=r"^[a-z_][a-z0-9_]{0,54}$")
    home: Path = Field(default=Path(".leadengine"), description="Embedded server data lives here.")
    rules_file: Path | None = Field(
        default=None, description="Rules YAML; unset = shipped default."
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="32 bytes, base64: wraps the per-lead keys that seal personal data. Unset: "
        "read `master_key_file`, else `home/master.key` (created on first use, mode 0600).",
    )
    master_key_file: Path | None = Field(default=None, description="File holding the master key.")
    log_format: str = Field(default="console", pattern=r"^(console|json)$")
    log_level: str = Field(default="INFO", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    connect_timeout_s: int = Field(
        default=3,
        ge=1,
        le=600,
        description="How long one-shot commands wait to reach the database or the broker.",
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; unset = embedded broker (demo only)."
    )
    kafka_topic: str = Field(default="lead-events", min_length=1)
    kafka_dlq_topic: str | None = Field(default=None, description="Default: <topic>.dlq")
    kafka_group: str = Field(default="leadengine", min_length=1)
    relay_topic: str = Field(
        default="lead-decisions", min_length=1, description="Where `relay` publishes decisions."
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT", pattern=r"^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve Prometheus /metrics on this port (consume, project --follow).",
    )
    batch_size: int = Field(default=500, ge=1, le=100_000)
    cache_size: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Aggregates a process keeps decoded in memory (the write side's cache and "
        "the projector's, each); memory is bounded by this, not by the input's size.",
    )
    cache_facts: int = Field(
        default=40_000,
        ge=1,
        le=100_000_000,
        description="Facts the cached aggregates may hold in all (each cache), besides "
        "LEADENGINE_CACHE_SIZE: long histories weigh more than new leads.",
    )
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)

    @field_validator("database_schema")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED:
            raise ValueError(f"{value!r} is a reserved word in PostgreSQL")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        text = value.get_secret_value().strip() if value is not None else ""
        if value is not None and "://" in text:
            scheme = urlsplit(text).scheme.lower()
            if scheme not in ("postgresql", "postgres"):
                raise ValueError(f"a {scheme or 'schemeless'} URL is not a PostgreSQL URL")
        elif value is not None and "=" not in text:
            raise ValueError("not a URL")
        return value

    @field_validator(
        "database_url", "home", "rules_file", "master_key_file", "kafka_ssl_cafile", mode="before"
    )
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("set but empty; unset it for the default, or give a value")
        return value

    @property
    def dlq_topic(self) -> str:
        return self.kafka_dlq_topic or f"{self.kafka_topic}.dlq"

    def kafka_client_options(self) -> dict[str, object]:
        """Connection and security options shared by consumers, producers and admin clients."""
        options: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            options["sasl_mechanism"] = self.kafka_sasl_mechanism
            options["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                options["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = str(self.kafka_ssl_cafile)
        options["bootstrap_timeout_ms"] = self.connect_timeout_s * 1000
        return options


class SettingsError(LeadEngineError):
    """A `LEADENGINE_*` variable with a value the engine cannot use; names the variable."""


def describe(exc: ValidationError) -> str:
    """One line per the first bad variable: its name, its value (secrets masked), what to set."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = PREFIX + field.upper()
        shown = "***" if field in SECRET_FIELDS else repr(str(error.get("input")))
        reason = str(error["msg"]).removeprefix("Value error, ")
        expected = EXPECTED.get(field)
        if "pattern" in reason or (expected and error["type"] != "value_error"):
            reason = "not valid"
        hint = f"; set it to {expected}" if expected else ""
        problems.append(f"{variable}={shown}: {reason}{hint}")
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def secrets_in_environment() -> list[str]:
    """Secret values as set in the environment, for masking whatever gets echoed back."""
    found = []
    for field in SECRET_FIELDS:
        value = os.environ.get(PREFIX + field.upper(), "")
        if "://" in value:
            with contextlib.suppress(ValueError):
                value = urlsplit(value).password or ""
        if len(value) >= 3:
            found.append(value)
    return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None
