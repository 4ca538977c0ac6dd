"""`attribution_credits`: attribution results a reporting job can read with SQL.

Markov and Shapley need every path at once, so they are not views; `report attribution --save`
replaces the rows of the models it computed (same `by`, value and conversion) in one
transaction, stamped with the window, the as-of moment, the rules version and (revenue) the
currency, so rows of one model are never in two currencies."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import sql

from engine.analytics.attribution import Credits
from engine.analytics.report import Window
from engine.postgres.db import Database


def save(db: Database, results: list[Credits], window: Window, rules_ref: str) -> int:
    table = sql.Identifier(db.schema, "attribution_credits")
    now = datetime.now(UTC)
    rows = [
        (
            r.model,
            r.by,
            r.value,
            r.conversion,
            row[r.by],
            row["credit"],
            row["share_pct"],
            r.total,
            r.conversions,
            window.start,
            window.end,
            window.as_of,
            rules_ref,
            now,
            r.currency,
        )
        for r in results
        for row in r.rows()
    ]
    with db.connect() as conn, conn.transaction(), conn.cursor() as cur:
        for r in results:
            cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE model = %s AND by = %s AND value = %s AND conversion = %s"
                ).format(table),
                (r.model, r.by, r.value, r.conversion),
            )
        cur.executemany(
            sql.SQL(
                "INSERT INTO {} (model, by, value, conversion, key, credit, share_pct, total, "
                "conversions, window_from, window_to, as_of, rules_version, computed_at, currency) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(table),
            rows,
        )
    return len(rows)
