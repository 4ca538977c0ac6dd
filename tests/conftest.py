"""Test fixtures: a real PostgreSQL always (LEADENGINE_TEST_DATABASE_URL, else a throwaway
embedded server), a database of its own per test holding the engine's schema already migrated
(a copy of one migrated once per session: migrating took most of a short test's time), and the
in-memory store for unit tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.domain.rules import Rules, load_rules
from engine.postgres import db as dbmod
from engine.postgres.keystore import CHECK_TABLE
from engine.runtime import Runtime, open_runtime
from engine.services.application import LeadEngine
from engine.settings import Settings

POPO_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@pytest.fixture(scope="session")
def rules() -> Rules:
    return load_rules()


@pytest.fixture
def memory_app(rules: Rules) -> Iterator[LeadEngine]:
    app = LeadEngine(rules=rules, env=POPO_ENV)
    yield app
    app.close()


#: the engine's schema in every test's database (each test has a database of its own)
SCHEMA = "leadengine_test"


@pytest.fixture(scope="session")
def server_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of the PostgreSQL server the suite talks to (the embedded one is started here)."""
    url = os.environ.get("LEADENGINE_TEST_DATABASE_URL")
    if url:
        return url
    home = tmp_path_factory.mktemp("pg")
    database = dbmod.embedded(home, "public")
    return (
        f"host={database.host} port={database.port} dbname={database.dbname} user={database.user}"
    )


def _in(url: str, dbname: str) -> str:
    return make_conninfo(**(conninfo_to_dict(url) | {"dbname": dbname}))


def _admin(url: str, statement: sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def migrated_template(
    server_root: str, rules: Rules, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of this session whose SCHEMA every migration has built: each test's database
    is a copy of it (CREATE DATABASE ... TEMPLATE), dropped with the session."""
    name = f"le_tpl_{uuid.uuid4().hex[:12]}"
    _admin(server_root, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _in(server_root, name)
    home = tmp_path_factory.mktemp("template-home")
    settings = Settings(database_url=url, database_schema=SCHEMA, home=home)  # type: ignore[arg-type]
    with open_runtime(settings, rules=rules, database=dbmod.from_url(url, SCHEMA)):
        pass
    yield name
    _admin(
        server_root, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def server_url(server_root: str, migrated_template: str) -> Iterator[str]:
    """URL of this test's own database: a copy of the migrated template, dropped afterwards
    (with any connection a killed or still running process left open)."""
    name = f"le_t_{uuid.uuid4().hex[:12]}"
    _admin(
        server_root,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(migrated_template)
        ),
    )
    yield _in(server_root, name)
    _admin(
        server_root, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def database(server_url: str) -> Iterator[dbmod.Database]:
    """The engine's schema in this test's database, migrated; no master key adopted yet (the
    first process to open it checks in its own, as on a fresh schema)."""
    database = dbmod.from_url(server_url, SCHEMA)
    with database.connect() as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(SCHEMA, CHECK_TABLE)))
    yield database


@pytest.fixture
def fresh_database(server_url: str) -> dbmod.Database:
    """A schema nothing has created yet, in this test's database: for tests of migrating or
    initialising one (`database` is migrated already)."""
    return dbmod.from_url(server_url, f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def settings(server_url: str, database: dbmod.Database, tmp_path: Path) -> Settings:
    return Settings(
        database_url=server_url, database_schema=database.schema, home=tmp_path / "home"
    )  # type: ignore[arg-type]


@pytest.fixture
def runtime(settings: Settings, database: dbmod.Database, rules: Rules) -> Iterator[Runtime]:
    with open_runtime(settings, rules=rules, database=database) as rt:
        yield rt


@pytest.fixture
def cli_env(server_url: str, database: dbmod.Database, tmp_path: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess against this test's schema (without
    the runner's COLUMNS and LINES: tables get the width a pipe gets, whoever runs the tests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEADENGINE_") and k not in ("COLUMNS", "LINES")
    }
    env.update(
        LEADENGINE_DATABASE_URL=server_url,
        LEADENGINE_DATABASE_SCHEMA=database.schema,
        LEADENGINE_HOME=str(tmp_path / "home"),
    )
    return env


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka-protocol broker: LEADENGINE_TEST_KAFKA_BOOTSTRAP_SERVERS, else Tansu."""
    configured = os.environ.get("LEADENGINE_TEST_KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from engine.kafka.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def kafka_settings(settings: Settings, kafka_bootstrap: str) -> Settings:
    """A topic (4 partitions) and a consumer group of this test's own, with quick joins."""
    from engine.kafka.publish import ensure_topic

    run = uuid.uuid4().hex[:10]
    topic = f"t-{run}"
    ensure_topic(kafka_bootstrap, topic, partitions=4)
    return settings.model_copy(
        update={
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_topic": topic,
            "kafka_group": f"g-{run}",
            "kafka_session_timeout_ms": 6000,
            "kafka_heartbeat_interval_ms": 1000,
            "batch_size": 500,
        }
    )


@pytest.fixture
def kafka_env(cli_env: dict[str, str], kafka_settings: Settings) -> dict[str, str]:
    return cli_env | {
        "LEADENGINE_KAFKA_BOOTSTRAP_SERVERS": str(kafka_settings.kafka_bootstrap_servers),
        "LEADENGINE_KAFKA_TOPIC": kafka_settings.kafka_topic,
        "LEADENGINE_KAFKA_GROUP": kafka_settings.kafka_group,
        "LEADENGINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "LEADENGINE_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "LEADENGINE_LOG_FORMAT": "json",
    }
