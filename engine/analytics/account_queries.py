"""The account tables as `account show | explain`, `report accounts` and `lead explain` read
them (docs/accounts.md). SQL here; the CLI only renders what these return."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import sql

from engine.postgres.db import Database

Row = dict[str, Any]


def rows(db: Database, query: str, *params: object) -> list[Row]:
    """`query` (its `{s}` is the engine's schema) as dicts by column name."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL(query).format(s=sql.Identifier(db.schema)), params)
        names = [d.name for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def account(db: Database, key: str) -> Row | None:
    """The account's state and score, or None if the read model has no account `key`."""
    found = rows(
        db,
        "SELECT a.*, c.fit, c.engagement, c.score, c.members, c.engaged, c.points, c.mqa_at, "
        "c.mqa_trigger, c.mqa_rules, c.mqa_reason, c.rules_version FROM {s}.account_state a "
        "LEFT JOIN {s}.account_scores c USING (account_id) WHERE a.account_key = %s",
        key,
    )
    return found[0] if found else None


def members(db: Database, account_id: UUID) -> list[Row]:
    """The account's leads, most engaged first, with the rule that matched each."""
    return rows(
        db,
        "SELECT l.lead_key, l.stage, s.engagement, m.rule, m.reason FROM {s}.account_members m "
        "JOIN {s}.account_signals s USING (lead_id) LEFT JOIN {s}.lead_state l USING (lead_id) "
        "WHERE m.account_id = %s ORDER BY s.engagement DESC, l.lead_key",
        account_id,
    )


def scores(db: Database) -> list[Row]:
    """Every account's score, highest first."""
    return rows(
        db,
        "SELECT account_key, score, fit, engagement, members, engaged, mqa_at "
        "FROM {s}.account_scores ORDER BY score DESC, account_key",
    )


def matched_by(db: Database) -> list[Row]:
    """How many leads each matching rule placed (`none`: no account)."""
    return rows(
        db,
        "SELECT coalesce(rule, 'none') AS rule, count(*) AS leads FROM "
        "{s}.account_members GROUP BY 1 ORDER BY 2 DESC, 1",
    )


def lead_match(db: Database, lead_id: UUID) -> Row | None:
    """The lead's account decision (`lead explain`), or None before the projector ran."""
    found = rows(
        db,
        "SELECT account_key, rule, reason, candidates, decided_at, rules_version "
        "FROM {s}.account_members WHERE lead_id = %s",
        lead_id,
    )
    return found[0] if found else None
