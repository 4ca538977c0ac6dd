"""A data set built once per test module and copied for each of its tests.

Generating, ingesting and projecting a few hundred journeys took most of a reader-side test's
time, and every test of such a module built the same data. `built_database` builds it once, in a
database of its own (a copy of the migrated template, like every test's); `copy_of` gives each
test a copy of that database (CREATE DATABASE ... TEMPLATE) and of the master key that sealed its
personal fields. A test may still change its copy: the next test gets the data as built."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from engine.postgres import db as dbmod
from engine.postgres.keystore import CHECK_TABLE
from tests.conftest import SCHEMA, _admin, _in

#: builds the data through the CLI: gets the environment `leadengine` runs under
Build = Callable[[dict[str, str]], None]


@dataclass(frozen=True)
class Built:
    root: str  # the server's URL
    name: str  # the database holding the data set
    home: Path  # the engine's home it was built with (its master key)


def cli_env(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADENGINE_")}
    return env | {
        "LEADENGINE_DATABASE_URL": url,
        "LEADENGINE_DATABASE_SCHEMA": SCHEMA,
        "LEADENGINE_HOME": str(home),
    }


def _disconnect(root: str, name: str) -> None:
    """No session may stay on a database that CREATE DATABASE copies."""
    with psycopg.connect(root, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextmanager
def built_database(root: str, template: str, home: Path, build: Build) -> Iterator[Built]:
    """A database copied from the migrated `template`, filled by `build`; dropped afterwards."""
    name = f"le_ds_{uuid.uuid4().hex[:12]}"
    _admin(
        root,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        ),
    )
    try:
        url = _in(root, name)
        with dbmod.from_url(url, SCHEMA).connect() as conn:  # as `database`: no key adopted yet
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(SCHEMA, CHECK_TABLE)))
        build(cli_env(url, home))
        _disconnect(root, name)
        yield Built(root, name, home)
    finally:
        _admin(
            root, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def copy_of(built: Built, home: Path) -> Iterator[str]:
    """URL of a test's own copy of `built`, its master key placed in `home`; dropped afterwards."""
    name = f"le_t_{uuid.uuid4().hex[:12]}"
    _admin(
        built.root,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(built.name)
        ),
    )
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built.home / "master.key", home / "master.key")
    try:
        yield _in(built.root, name)
    finally:
        _admin(
            built.root,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


def per_test_copies(build: Callable[[dict[str, str], Path], None]) -> tuple[Any, Any, Any]:
    """The fixtures of a module whose every test reads one data set, to assign to
    `generated, server_url, database`: `generated` runs `build(env, work_dir)` once for the
    module; `server_url` and `database` override conftest's with the test's own copy of it."""

    @pytest.fixture(scope="module")
    def generated(
        server_root: str, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Built]:
        work = tmp_path_factory.mktemp("dataset")
        with built_database(
            server_root, migrated_template, work / "home", lambda env: build(env, work)
        ) as built:
            yield built

    @pytest.fixture
    def server_url(generated: Built, tmp_path: Path) -> Iterator[str]:
        with copy_of(generated, tmp_path / "home") as url:
            yield url

    @pytest.fixture
    def database(server_url: str) -> dbmod.Database:
        """The copy's schema, its master key check kept (the copied key is the one it names)."""
        return dbmod.from_url(server_url, SCHEMA)

    return generated, server_url, database
