"""`forget` of a person removes them from the account views and `account show` without
changing any account-level number: the lead's contribution stays, under its keyed-hash id."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from psycopg import sql

from engine.runtime import Runtime
from tests.integration.conftest import reader_login
from tests.integration.test_accounts import ingest, members, story, table


def test_forget_keeps_account_numbers_and_lists_the_person_nowhere(
    runtime: Runtime, server_url: str, leadengine: Any
) -> None:
    ingest(runtime, story())
    scores = table(runtime, "account_scores")
    code, out = leadengine("account", "show", "a1")
    assert code == 0 and "l1" in out and "Its leads (2)" in out

    gone = runtime.app.forget("l1", reason="ticket 7", by="dpo", at=datetime.now(UTC))
    runtime.projector.run(until_caught_up=True)

    assert table(runtime, "account_scores") == scores  # fit, engagement, members, MQA: the same
    schema = runtime.db.schema
    with reader_login(runtime.db, server_url) as conn:
        listed = members(conn, schema)
        view = conn.execute(
            sql.SQL("SELECT members, engaged, score FROM {}.account_state "
                    "WHERE account_key = 'a1'").format(sql.Identifier(f"{schema}_read"))
        ).fetchone()  # fmt: skip
    assert "l1" not in listed and gone.pseudonym not in listed and "l2" in listed
    assert view == (2, 2, 85)  # the account still counts two leads, both engaged
    # kept internally, pseudonymous: the member row names the lead by its id only
    (row,) = table(runtime, "account_members", f"WHERE lead_id = '{gone.lead_id}'")
    assert row[2] == "a1"
    code, out = leadengine("account", "show", "a1")
    assert code == 0 and gone.pseudonym not in out and "l1" not in out
    assert "Its leads (1, 1 forgotten: counted in the score, not listed)" in out
