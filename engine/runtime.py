"""Wiring: settings -> database -> application, dead-letter store and projector, opened once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine import db as dbmod
from engine.application import LeadEngine
from engine.deadletters import DeadLetterStore
from engine.projections.projector import Projector
from engine.projections.tables import create_tables
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
    """Create the schema and every table; safe to run any number of times."""
    dbmod.ensure_schema(db)
    create_tables(db)
    DeadLetterStore(db).create_table()


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
        app = LeadEngine(rules=rules, env=db.eventsourcing_env())
    projector = Projector(app, db)
    try:
        yield Runtime(settings, db, app, DeadLetterStore(db), projector)
    finally:
        projector.close()
        app.close()
