"""The SQL of `leadengine db grant-reporting`: what a reporting job's login has and is given
(docs/read-model.md). The CLI decides what to say; this module asks and grants."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import errors, sql

from engine.postgres.db import Database
from engine.readmodel import reporting_login_sql, role_exists


class GrantRefused(Exception):
    """This database user may not grant the login its rights (the server's message)."""


@dataclass(frozen=True)
class LoginPlan:
    login: str
    exists: bool  # a role of that name exists
    can_login: bool  # ... and it may log in
    reader_role: bool  # the reader role exists
    statements: tuple[sql.Composed, ...]  # what gives the login its rights
    text: tuple[str, ...]  # the same as SQL text, for an administrator


def reporting_plan(db: Database, login: str) -> LoginPlan:
    """The login role as the server has it, and the statements that would set it up."""
    with db.connect() as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (login,))
        found = row.fetchone()
        statements = reporting_login_sql(login, create_login=found is None)
        return LoginPlan(
            login,
            exists=found is not None,
            can_login=bool(found and found[0]),
            reader_role=role_exists(conn),
            statements=tuple(statements),
            text=tuple(s.as_string(conn) for s in statements),
        )


def grant_reporting(db: Database, plan: LoginPlan) -> str | None:
    """Run the plan's statements in one transaction; the owner of the login's schema after
    (None if there is no such schema). GrantRefused if this user may not grant them."""
    with db.connect() as conn:
        try:
            with conn.transaction():
                for statement in plan.statements:
                    conn.execute(statement)
        except errors.InsufficientPrivilege as exc:
            raise GrantRefused(str(exc)) from None
        owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (plan.login,)
        ).fetchone()
    return str(owner[0]) if owner else None
