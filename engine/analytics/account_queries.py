"""The account tables as `account show | explain`, `report accounts` and `lead explain` read
them (docs/accounts.md). SQL here; the CLI only renders what these return."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import sql

from engine.domain.accounts.profile import AccountProfile
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
        "c.mqa_trigger, c.mqa_rules, c.mqa_reason, c.rules_version, c.segment, c.roles_covered, "
        "c.roles_missing, c.group_engagement FROM {s}.account_state a "
        "LEFT JOIN {s}.account_scores c USING (account_id) WHERE a.account_key = %s",
        key,
    )
    return found[0] if found else None


def members(db: Database, account_id: UUID) -> list[Row]:
    """The account's leads, most engaged first, with the rule that matched each; a forgotten
    lead is counted in the account's numbers but listed nowhere."""
    return rows(
        db,
        "SELECT l.lead_key, l.stage, s.engagement, m.rule, m.reason FROM {s}.account_members m "
        "JOIN {s}.account_signals s USING (lead_id) LEFT JOIN {s}.lead_state l USING (lead_id) "
        "WHERE m.account_id = %s AND l.erased_at IS NULL "  # forgotten: counted, never listed
        "ORDER BY s.engagement DESC, l.lead_key",
        account_id,
    )


def scores(db: Database) -> list[Row]:
    """Every account's score, highest first."""
    return rows(
        db,
        "SELECT account_key, score, fit, engagement, members, engaged, mqa_at, segment, "
        "roles_missing FROM {s}.account_scores ORDER BY score DESC, account_key",
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


def group(db: Database, account_id: UUID) -> list[Row]:
    """The account's buying group, one row per role (rules order is not stored: by role)."""
    return rows(
        db,
        "SELECT role, required, covered, leads, engaged, best_engagement "
        "FROM {s}.account_buying_group WHERE account_id = %s ORDER BY NOT required, role",
        account_id,
    )


def segments(db: Database) -> list[Row]:
    """Accounts with members per segment: how many, how many with every required role covered,
    their mean group engagement."""
    return rows(
        db,
        "SELECT coalesce(segment, '(none)') AS segment, count(*) AS accounts, "
        "count(*) FILTER (WHERE cardinality(roles_missing) = 0) AS covered, "
        "round(avg(group_engagement), 2) AS avg_group_engagement FROM {s}.account_scores "
        "WHERE members > 0 GROUP BY 1 ORDER BY 1",
    )


def roles(db: Database) -> list[Row]:
    """Per buying-group role: in how many accounts it is required, covered, missing."""
    return rows(
        db,
        "SELECT g.role, count(*) FILTER (WHERE g.required) AS required_in, "
        "count(*) FILTER (WHERE g.required AND g.covered) AS covered_in, "
        "count(*) FILTER (WHERE g.required AND NOT g.covered) AS missing_in, "
        "sum(g.leads) AS leads FROM {s}.account_buying_group g JOIN {s}.account_scores c "
        "USING (account_id) WHERE c.members > 0 GROUP BY 1 ORDER BY 1",
    )


def funnel(db: Database) -> list[Row]:
    """Accounts reaching each stage (kpi_account_funnel)."""
    return rows(
        db,
        "SELECT stage, accounts, conversion_pct FROM {s}.kpi_account_funnel ORDER BY position",
    )


def matches(db: Database, account_id: UUID) -> list[Row]:
    """When and by which rule each of the account's leads was matched (as decided now)."""
    return rows(
        db,
        "SELECT m.decided_at AS at, m.lead_id, l.lead_key, m.rule, m.reason "
        "FROM {s}.account_members m "
        "LEFT JOIN {s}.lead_state l USING (lead_id) WHERE m.account_id = %s",
        account_id,
    )


def lead_keys(db: Database, lead_ids: list[UUID]) -> dict[UUID, str | None]:
    """Each lead's key as `lead_state` has it (None: forgotten, or not projected yet)."""
    if not lead_ids:
        return {}
    found = rows(
        db,
        "SELECT lead_id, lead_key, erased_at FROM {s}.lead_state WHERE lead_id = ANY(%s)",
        lead_ids,
    )
    return {r["lead_id"]: (None if r["erased_at"] else r["lead_key"]) for r in found}


def stages_reached(db: Database, account_id: UUID) -> list[Row]:
    """Each stage the account reached: when its first lead did, and which lead."""
    return rows(
        db,
        "SELECT DISTINCT ON (k.stage) k.reached_at AS at, k.stage, k.lead_key "
        "FROM {s}.kpi_stage_reached k JOIN {s}.account_members m USING (lead_id) "
        "WHERE m.account_id = %s ORDER BY k.stage, k.reached_at, k.lead_key",
        account_id,
    )


def profiles(db: Database) -> list[AccountProfile]:
    """Every account's profile as `account_state` holds it (what a what-if matches against)."""
    return [
        AccountProfile(
            account_id=r["account_key"],
            name=r["name"],
            domains=tuple(r["domains"] or ()),
            industry=r["industry"],
            employees=r["employees"],
            annual_revenue=r["annual_revenue"],
            country=r["country"],
            owner=r["owner"],
            tier=r["tier"],
            updated_at=r["updated_at"],
        )
        for r in rows(
            db,
            "SELECT account_key, name, domains, industry, employees, annual_revenue, country, "
            "owner, tier, updated_at FROM {s}.account_state ORDER BY account_key",
        )
    ]
