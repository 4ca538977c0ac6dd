"""`leadengine db grant-reporting NAME`: a reporting job's login reads the contract and builds
its models (dbt-style `CREATE TABLE ... AS SELECT`) in a schema of its own, and can do nothing
else: not write in the engine's schemas, not read the engine's tables, not create in public."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.readmodel import READER_ROLE, read_schema
from engine.runtime import Runtime
from tests.integration.conftest import load_for_readers


@pytest.fixture
def projected(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    load_for_readers(leadengine, tmp_path, 30, 11)
    return runtime


@pytest.fixture
def login(projected: Runtime) -> Iterator[str]:
    """A login of the job's own (created here: the checks below need it), dropped after."""
    name = f"dbt_{uuid.uuid4().hex[:8]}"
    with projected.db.connect() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with projected.db.connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _connect(server_url: str, user: str) -> psycopg.Connection[Any]:
    params = conninfo_to_dict(server_url) | {"user": user}
    return psycopg.connect(make_conninfo(**params), autocommit=True)


def _refused(conn: psycopg.Connection[Any], statement: sql.Composable) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_job_builds_in_its_schema_and_nowhere_else(
    projected: Runtime, login: str, leadengine: Any, server_url: str
) -> None:
    code, out = leadengine("db", "grant-reporting", login)
    assert code == 0, leadengine.stderr[-1]
    assert f"writes in its own schema {login}" in out
    engine, read = projected.db.schema, read_schema(projected.db.schema)
    mine, r, e = sql.Identifier(login), sql.Identifier(read), sql.Identifier(engine)
    with projected.db.connect() as admin:
        (leads,) = admin.execute(sql.SQL("SELECT count(*) FROM {}.lead_state").format(e)).fetchone()  # type: ignore[misc]
    assert leads > 0
    with _connect(server_url, login) as job:
        job.execute(
            sql.SQL(
                "CREATE TABLE {}.stg_leads AS SELECT lead_id, stage, mql_at FROM {}.lead_current"
            ).format(mine, r)
        )
        by_stage = (
            "CREATE VIEW {s}.by_stage AS SELECT stage, count(*) FROM {s}.stg_leads GROUP BY 1"
        )
        job.execute(sql.SQL(by_stage).format(s=mine))
        copied = job.execute(sql.SQL("SELECT count(*) FROM {}.stg_leads").format(mine)).fetchone()
        assert copied == (leads,)
        _refused(job, sql.SQL("CREATE TABLE {}.x (a int)").format(r))  # the contract's schema
        _refused(job, sql.SQL("CREATE TABLE {}.x (a int)").format(e))  # the engine's schema
        _refused(job, sql.SQL("SELECT count(*) FROM {}.lead_state").format(e))  # its tables
        _refused(job, sql.SQL("DELETE FROM {}.lead_current").format(r))  # writing the views
        _refused(job, sql.SQL("CREATE TABLE public.x (a int)"))
        _refused(job, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(f"{login}_more")))
    # idempotent, and still works after it
    assert leadengine("db", "grant-reporting", login)[0] == 0


def test_print_sql_is_the_exact_sql_and_it_works(
    projected: Runtime, leadengine: Any, server_url: str
) -> None:
    name = f"job_{uuid.uuid4().hex[:8]}"
    code, out = leadengine("db", "grant-reporting", name, "--print-sql")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines == [
        f"CREATE ROLE \"{name}\" LOGIN PASSWORD '...';",
        f'GRANT "{READER_ROLE}" TO "{name}";',
        f'CREATE SCHEMA IF NOT EXISTS "{name}" AUTHORIZATION "{name}";',
    ]
    read = sql.Identifier(read_schema(projected.db.schema))
    try:
        with projected.db.connect() as admin:
            for line in lines:
                admin.execute(line.replace("'...'", "'secret'"))  # type: ignore[arg-type]
        with _connect(server_url, name) as job:
            job.execute(
                sql.SQL("CREATE TABLE {}.sla AS SELECT * FROM {}.lead_sla").format(
                    sql.Identifier(name), read
                )
            )
            _refused(job, sql.SQL("CREATE TABLE public.x (a int)"))
    finally:
        with projected.db.connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def test_a_missing_login_is_named_with_the_way_on(projected: Runtime, leadengine: Any) -> None:
    code, _ = leadengine("db", "grant-reporting", "nobody_here_h16")
    assert code != 0
    message = leadengine.stderr[-1]
    assert "no login role 'nobody_here_h16'" in message and "--print-sql" in message
    code, _ = leadengine("db", "grant-reporting", projected.db.schema)
    assert code != 0 and "one of the engine's schemas" in leadengine.stderr[-1]
