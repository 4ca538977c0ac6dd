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
from engine.services.application import EVENTS_TABLE, LeadEngine
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


class NoEventStore(SettingsError):
    """A read-only command pointed at a place with no event store: it refuses, creating
    nothing, rather than making an empty store and reporting on it as if all were well."""


_NO_STORE = (
    "no leadengine event store at {where}; run `leadengine ingest` or `leadengine consume` "
    "first, or check LEADENGINE_DATABASE_URL (and LEADENGINE_DATABASE_SCHEMA)"
)


def existing_database(settings: Settings, database: dbmod.Database | None) -> dbmod.Database:
    """The database of a read-only command, refused (`NoEventStore`) unless it holds an event
    store already: neither the embedded server's data nor a schema is created to be read."""
    if database is None and settings.database_url is None:
        pgdata = settings.home / "pgdata"
        if not pgdata.is_dir():
            raise NoEventStore(_NO_STORE.format(where=f"the embedded server's {pgdata}"))
    db = database or dbmod.resolve(settings)
    if not dbmod.has_table(db, EVENTS_TABLE):
        raise NoEventStore(_NO_STORE.format(where=dbmod.where(db)))
    return db


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
    create: bool = True,
) -> Iterator[Runtime]:
    """The engine on its store. `create=False` (read-only commands): refuse, creating nothing,
    when there is no event store there yet (writers create and migrate a brand-new one)."""
    settings = settings or get_settings()
    db = (database or dbmod.resolve(settings)) if create else existing_database(settings, database)
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
