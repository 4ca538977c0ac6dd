"""Wiring: settings -> database -> application, dead-letter store and projector, opened once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine import db as dbmod
from engine import migrations
from engine.application import LeadEngine
from engine.deadletters import DeadLetterStore
from engine.privacy import load_master_key
from engine.projections.projector import Projector
from engine.rules import Rules, load_rules
from engine.settings import Settings, get_settings


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


@contextmanager
def open_runtime(
    settings: Settings | None = None,
    *,
    rules: Rules | None = None,
    database: dbmod.Database | None = None,
) -> Iterator[Runtime]:
    settings = settings or get_settings()
    db = database or dbmod.resolve(settings)
    rules = rules or load_rules(settings.rules_file)
    with dbmod.init_lock(db):
        init_database(db)
        master = load_master_key(settings.master_key, settings.master_key_file, settings.home)
        app = LeadEngine(rules=rules, env=db.eventsourcing_env(), master_key=master)
    projector = Projector(app, db)
    try:
        yield Runtime(settings, db, app, DeadLetterStore(db), projector)
    finally:
        projector.close()
        app.close()
