"""The one place that reads the environment: every knob is a `LEADENGINE_*` variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Engine settings; secrets are `SecretStr` so they never reach a log line."""

    model_config = SettingsConfigDict(env_prefix="LEADENGINE_", frozen=True, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL; unset means an embedded server under `home`.",
    )
    database_schema: str = Field(default="leadengine", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
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
    log_level: str = Field(default="INFO")
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="host:port[,host:port]; unset = embedded broker (demo only)."
    )
    kafka_topic: str = Field(default="lead-events", min_length=1)
    kafka_dlq_topic: str | None = Field(default=None, description="Default: <topic>.dlq")
    kafka_group: str = Field(default="leadengine", min_length=1)
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
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)

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
        return options


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
