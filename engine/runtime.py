"""Wiring: settings -> database -> application, dead-letter store and projector, opened once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.domain.errors import RulesError
from engine.domain.rules import Rules, load_rules
from engine.postgres import db as dbmod
from engine.postgres import migrations
from engine.postgres.deadletters import DeadLetterStore
from engine.postgres.keyfile import load_master_key
from engine.projections.projector import Projector
from engine.services.application import LeadEngine
from engine.settings import Settings, SettingsError, get_settings


@dataclass
class Runtime:
    settings: Settings
    db: dbmod.Database
    app: LeadEngine
    deadletters: DeadLetterStore
    projector: Projector

    @property
    def rules(self) -> Rules:
        return self.app.rules


def init_database(db: dbmod.Database) -> None:
    """Migrate a brand-new schema; refuse one that is behind (`leadengine db migrate`)."""
    dbmod.ensure_schema(db)
    migrations.check(db)


def configured_rules(settings: Settings) -> Rules:
    """The rules of `LEADENGINE_RULES_FILE`; an error names the variable."""
    try:
        return load_rules(settings.rules_file)
    except RulesError as exc:
        raise SettingsError(f"LEADENGINE_RULES_FILE: {exc}") from None


def master_key(settings: Settings) -> bytes:
    """The master key; an unreadable or binary key file, or a home it cannot be created in,
    is named by its variable."""
    variable, path = (
        ("LEADENGINE_MASTER_KEY_FILE", settings.master_key_file)
        if settings.master_key_file
        else ("LEADENGINE_HOME", settings.home)
    )
    try:
        return load_master_key(settings.master_key, settings.master_key_file, settings.home)
    except UnicodeDecodeError:
        raise SettingsError(
            f"{variable}={str(path)!r}: the master key file is not text; expected 32 random "
            "bytes in base64 on one line"
        ) from None
    except OSError as exc:
        raise SettingsError(
            f"{variable}={str(path)!r}: cannot read or create the master key "
            f"({exc.strerror}); point it at a readable (for LEADENGINE_HOME, writable) place"
        ) from None


@contextmanager
def open_runtime(
    settings: Settings | None = None,
    *,
    rules: Rules | None = None,
    database: dbmod.Database | None = None,
) -> Iterator[Runtime]:
    settings = settings or get_settings()
    db = database or dbmod.resolve(settings)
    rules = rules or configured_rules(settings)
    with dbmod.init_lock(db):
        init_database(db)
        master = master_key(settings)
        env = db.eventsourcing_env() | {
            "AGGREGATE_CACHE_MAXSIZE": str(settings.cache_size),
            "AGGREGATE_CACHE_FACTS": str(settings.cache_facts),
        }
        app = LeadEngine(rules=rules, env=env, master_key=master)
    projector = Projector(app, db, cache_size=settings.cache_size, cache_facts=settings.cache_facts)
    try:
        yield Runtime(settings, db, app, DeadLetterStore(db), projector)
    finally:
        projector.close()
        app.close()
