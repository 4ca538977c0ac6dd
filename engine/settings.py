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
    log_format: str = Field(default="console", pattern=r"^(console|json)$")
    log_level: str = Field(default="INFO")
    batch_size: int = Field(default=500, ge=1, le=100_000)
    max_event_bytes: int = Field(default=256 * 1024, ge=1024)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
