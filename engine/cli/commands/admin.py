"""`leadengine db init | migrate | grant-reporting`: the schema, its read contract and roles."""

from __future__ import annotations

import argparse

from engine.cli.args import Commands, handles
from engine.domain.errors import LeadEngineError
from engine.postgres import db as dbmod
from engine.postgres import grants, migrations
from engine.postgres.dependents import engine_schemas
from engine.readmodel import READER_ROLE, read_schema
from engine.runtime import open_runtime
from engine.settings import get_settings


def register(commands: Commands) -> None:
    db = commands.group("db", help="database administration", dest="db_command")
    p = db.add_parser(
        "init",
        help="create the schema, tables, read-contract views and reader role (idempotent)",
        description="Versioned and idempotent: applies the migrations not yet applied, then "
        "creates the event store's tables, the views in <schema>_read and the role "
        "leadengine_reader (NOLOGIN; give reporting jobs login roles IN it). See "
        "docs/read-model.md.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be applied; change nothing"
    )
    handles(p, db_init)
    p = db.add_parser(
        "migrate",
        help="upgrade an existing schema to this leadengine's version (same as init)",
        description="Processes refuse to start on a schema that is behind; run this first "
        "(e.g. as a one-shot job in a rolling upgrade). Each migration runs in its own "
        "transaction, recorded in <schema>.schema_migrations.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be applied; change nothing"
    )
    handles(p, db_init)
    p = db.add_parser(
        "grant-reporting",
        help="give a reporting job's login the read contract and a schema of its own to write",
        description="Makes the existing login NAME a member of leadengine_reader (SELECT on the "
        "views in <schema>_read, nothing else) and gives it a schema named NAME that it owns "
        "(dbt's target: CREATE TABLE/VIEW there). See docs/read-model.md.",
    )
    p.add_argument("name", help="the job's login role (must exist, unless --print-sql)")
    p.add_argument(
        "--print-sql",
        action="store_true",
        help="print the SQL (creating the login if missing) for an administrator; change nothing",
    )
    handles(p, db_grant_reporting)


def db_init(args: argparse.Namespace) -> int:
    """Create or upgrade the schema (versioned, idempotent), the read contract and its role."""
    from engine.postgres import db as dbmod

    settings = get_settings()
    database = dbmod.resolve(settings)
    dry_run = getattr(args, "dry_run", False)
    with dbmod.init_lock(database):
        dbmod.ensure_schema(database)
        before = migrations.status(database)
        applied = migrations.migrate(database, dry_run=dry_run)
    if dry_run:
        print(
            f"schema {database.schema} is at "
            f"{before.current if before.current is not None else 'no version'}; would apply: "
            + (", ".join(f"{m.version} {m.name}" for m in applied) or "nothing")
        )
        return 0
    with open_runtime(settings, database=database):  # the event store's and keys' own tables
        pass
    reader = migrations.ensure_reader(database)
    done = ", ".join(f"{m.version} {m.name}" for m in applied) or "nothing (up to date)"
    print(f"schema {database.schema} on {database!r}: version {migrations.LATEST}; applied {done}")
    print(
        f"read contract: views in {read_schema(database.schema)}; role {READER_ROLE} "
        + (
            "can read them and nothing else"
            if reader
            else "does not exist (this user may not create roles): ask an administrator to "
            f"CREATE ROLE {READER_ROLE} NOLOGIN, then run db migrate again"
        )
    )
    return 0


def db_grant_reporting(args: argparse.Namespace) -> int:
    """A reporting job's login: reads the contract (member of leadengine_reader) and writes in
    a schema of its own, named after it; or the SQL for an administrator (--print-sql)."""
    from engine.readmodel import READER_ROLE, read_schema

    login = args.name
    database = dbmod.resolve(get_settings())
    if not login or len(login.encode()) > 63 or login.startswith("pg_") or login == READER_ROLE:
        raise LeadEngineError(
            f"grant-reporting {login!r}: expected a login role's name (1 to 63 bytes, not "
            f"starting with pg_, not {READER_ROLE})"
        )
    if login in engine_schemas(database.schema):
        raise LeadEngineError(
            f"grant-reporting {login!r}: the job's schema is named after its login, and "
            f"{login} is one of the engine's schemas: choose another login name"
        )
    plan = grants.reporting_plan(database, login)
    if args.print_sql:
        if not plan.reader_role:
            print(f"-- first: leadengine db migrate (creates {READER_ROLE}), or")
            print(f"CREATE ROLE {READER_ROLE} NOLOGIN;  -- then: leadengine db migrate")
        for statement in plan.text:
            print(statement + ";")
        return 0
    if not plan.can_login:
        raise LeadEngineError(
            f"no login role {login!r}"
            + (" (it exists but cannot log in)" if plan.exists else "")
            + f": create it first (CREATE ROLE {login} LOGIN PASSWORD '...'), or run "
            "`leadengine db grant-reporting NAME --print-sql` for the SQL to hand an "
            "administrator"
        )
    if not migrations.ensure_reader(database):
        raise LeadEngineError(
            f"role {READER_ROLE} does not exist and this user may not create it: ask an "
            f"administrator to CREATE ROLE {READER_ROLE} NOLOGIN, then run db migrate"
        )
    try:
        owner = grants.grant_reporting(database, plan)
    except grants.GrantRefused as exc:
        raise LeadEngineError(
            f"this database user may not grant {login} its rights ({exc}): run "
            "`leadengine db grant-reporting NAME --print-sql` and hand the SQL to an "
            "administrator"
        ) from None
    if owner != login:
        raise LeadEngineError(
            f"schema {login} exists and belongs to {owner or '?'}, not to {login}: "
            f"ALTER SCHEMA {login} OWNER TO {login}, or drop it, then run this again"
        )
    print(
        f"{login}: reads the views in {read_schema(database.schema)} (member of {READER_ROLE}); "
        f"writes in its own schema {login} (owner); nothing else"
    )
    return 0
