"""`leadengine projections retry [NAME] [--lead KEY]`: bring parked leads back after a fix.

Each parked aggregate is re-folded from its whole stream under the current code and rules, up to
its projection's position, and its rows are written (each aggregate in a savepoint of its own);
those that succeed are unparked, the others stay parked with the new reason and one more
attempt. One transaction holds the projections' tracking rows meanwhile: a running projector's
next write waits for it, so no event of a lead falls between the re-fold and the unpark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg import sql

from engine.logs import get_logger
from engine.postgres.db import Database
from engine.projections.projector import Projector, names
from engine.services.application import LeadEngine

log = get_logger("engine.retry")


@dataclass
class RetryReport:
    retried: int = 0  # parked (projection, lead) pairs tried
    unparked: int = 0
    still_parked: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "retried": self.retried,
            "unparked": self.unparked,
            "still_parked": len(self.still_parked),
            "parked": self.still_parked,
        }


def retry(
    app: LeadEngine,
    db: Database,
    only: str | list[str] | tuple[str, ...] | None = None,
    *,
    lead: str | None = None,
) -> RetryReport:
    """Retry the aggregates parked by projections `only` (default all), or only lead `lead`."""
    wanted = names(only)
    parked = sql.Identifier(db.schema, "parked")
    tracking = sql.Identifier(db.schema, "projection_tracking")
    where = sql.SQL("projection = ANY(%s)") + (
        sql.SQL(" AND (originator_id = %s OR lead_key = %s)") if lead else sql.SQL("")
    )
    params: tuple[Any, ...] = (list(wanted), app.lead_id(lead), lead) if lead else (list(wanted),)
    report = RetryReport()
    projector = Projector(app, db, only=wanted)
    try:
        with db.connect() as conn, conn.transaction():
            positions = {}
            for name in wanted:  # one by one, in the order a projector's write takes them
                row = conn.execute(
                    sql.SQL("SELECT position FROM {} WHERE name = %s FOR UPDATE").format(tracking),
                    (name,),
                ).fetchone()
                positions[name] = int(row[0]) if row else 0
            pairs = conn.execute(
                sql.SQL("SELECT projection, originator_id FROM {} WHERE {} FOR UPDATE").format(
                    parked, where
                ),
                params,
            ).fetchall()
            streams: dict[UUID, set[str]] = {}
            for name, originator in pairs:
                streams.setdefault(originator, set()).add(name)
            projector.use_connection(conn)
            failed = {(p.projection, p.originator_id): p for p in projector.reproject(
                streams, positions
            )}  # fmt: skip
            for name, originator in pairs:
                again = failed.get((name, originator))
                report.retried += 1
                if again is None:
                    report.unparked += 1
                    conn.execute(
                        sql.SQL(
                            "DELETE FROM {} WHERE projection = %s AND originator_id = %s"
                        ).format(parked),
                        (name, originator),
                    )
                else:
                    conn.execute(
                        sql.SQL(
                            "UPDATE {} SET attempts = attempts + 1, error = %s, reason = %s, "
                            "retried_at = now() WHERE projection = %s AND originator_id = %s"
                        ).format(parked),
                        (again.error, again.reason, name, originator),
                    )
            cur = conn.execute(
                sql.SQL(
                    "SELECT projection, lead_key, originator_id, position, error, reason, attempts "
                    "FROM {} WHERE {} ORDER BY projection, position"
                ).format(parked, where),
                params,
            )
            columns = [c.name for c in cur.description or ()]
            report.still_parked = [
                {**dict(zip(columns, row, strict=True)), "originator_id": str(row[2])}
                for row in cur.fetchall()
            ]
    finally:
        projector.close()
    log.info(
        "parked leads retried",
        projections=list(wanted),
        retried=report.retried,
        unparked=report.unparked,
        still_parked=len(report.still_parked),
    )
    return report
