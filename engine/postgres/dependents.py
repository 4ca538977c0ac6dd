"""Objects that depend on the engine's tables and views, in any schema, and how the engine
changes its own objects without dropping them: a reporting team's views over the read
contract (in their own schema) must survive every rebuild, migration and upgrade.

Three moves, each keeping the OIDs of the engine's views (so views built on them stay):
- `replace_view`: `CREATE OR REPLACE VIEW`, which PostgreSQL allows when columns are only added
  at the end; an incompatible change is refused (`DependentObjects`) while anything outside
  the engine's schemas depends on the view, and made (drop, create) once nothing does.
- `repoint`: a rebuilt table replaces a live one; the views reading the live table directly
  are replaced in place with their own definitions, which then name the new table.
- `refuse_if_outside`: before an `ALTER TABLE` PostgreSQL refuses under any view (retyping
  a column), the list of outside objects in the way, or nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import errors, sql

from engine.domain.errors import LeadEngineError
from engine.postgres.db import Connection, one_row

#: Where to read the way through a refusal.
HOW_TO = "docs/read-model.md, 'When the engine refuses: objects that depend on the contract'"


def qualified(schema: str, name: str) -> str:
    """`schema.name` quoted for SQL and for a `::regclass` cast."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, name))


def engine_schemas(schema: str) -> tuple[str, ...]:
    """The schemas the engine owns: its tables, the read contract, a rebuild's staging."""
    return (schema, f"{schema}_read", f"{schema}_rebuild")


@dataclass(frozen=True)
class View:
    """A view or materialized view found over some relations."""

    name: str  # schema-qualified and quoted, ready for SQL
    schema: str
    kind: str  # 'v' view, 'm' materialized view
    depth: int  # 1: reads one of the relations directly; n: reads a view of depth n - 1
    direct: bool  # reads one of the relations itself (it may also read views of them)
    ours: bool  # the current user may replace it (owner, or member of its owner)


#: Views and materialized views over the relations, transitively: (view, what it reads).
EDGES = """
WITH RECURSIVE edges(view, below) AS (
    SELECT DISTINCT r.ev_class, d.refobjid
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY(%(roots)s::regclass[])
      AND r.ev_class <> d.refobjid
    UNION
    SELECT r.ev_class, d.refobjid
    FROM edges e JOIN pg_depend d ON d.refobjid = e.view JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.refobjid
)
SELECT DISTINCT format('%%I.%%I', n.nspname, v.relname), n.nspname, v.relkind,
       e.below = ANY(%(roots)s::regclass[]),
       format('%%I.%%I', bn.nspname, b.relname),
       pg_has_role(current_user, v.relowner, 'USAGE')
FROM edges e
JOIN pg_class v ON v.oid = e.view JOIN pg_namespace n ON n.oid = v.relnamespace
JOIN pg_class b ON b.oid = e.below JOIN pg_namespace bn ON bn.oid = b.relnamespace
"""

#: Other objects that need the relations (a foreign key, a function whose body reads them).
OTHERS = """
SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid)
FROM pg_depend d
WHERE d.refobjid = ANY(%s::regclass[]) AND d.deptype = 'n'
  AND d.classid <> 'pg_rewrite'::regclass
  AND NOT (d.classid = 'pg_class'::regclass AND d.objid = ANY(%s::regclass[]))
  AND NOT (d.classid = 'pg_constraint'::regclass AND EXISTS (
      SELECT 1 FROM pg_constraint c WHERE c.oid = d.objid AND c.conrelid = ANY(%s::regclass[])))
ORDER BY 1
"""


def views_over(conn: Connection, relations: Sequence[str]) -> list[View]:
    """Every view over `relations` (schema-qualified names), deepest first: the order in which
    a reader locks them (a view before what it reads)."""
    rows = conn.execute(EDGES, {"roots": list(relations)}).fetchall()
    below: dict[str, set[str]] = {}
    facts: dict[str, tuple[str, str, bool, bool]] = {}
    for name, schema, kind, direct, under, ours in rows:
        below.setdefault(name, set()).add(under)
        was = facts.get(name)
        facts[name] = (schema, kind, bool(direct) or bool(was and was[2]), bool(ours))
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in below:
            return 0  # one of the relations
        if name not in depth:
            depth[name] = 1 + max(depth_of(b) for b in below[name])
        return depth[name]

    views = [View(n, s, k, depth_of(n), d, o) for n, (s, k, d, o) in facts.items()]
    return sorted(views, key=lambda v: (-v.depth, v.name))


def outside(views: Iterable[View], schema: str) -> list[View]:
    return [v for v in views if v.schema not in engine_schemas(schema)]


def other_dependents(conn: Connection, relations: Sequence[str]) -> list[str]:
    rel = list(relations)
    return [row[0] for row in conn.execute(OTHERS, (rel, rel, rel)).fetchall()]


class DependentObjects(LeadEngineError):
    """The engine must change one of its objects in a way PostgreSQL refuses while other
    objects depend on it, and some of those are not the engine's: it will not drop them."""

    def __init__(self, what: str, objects: Sequence[str]) -> None:
        self.objects = list(objects)
        super().__init__(
            f"{what}; objects outside the engine's schemas depend on it and would be lost: "
            + ", ".join(self.objects)
            + f". Save their definitions, drop them, run the command again, then re-create "
            f"them ({HOW_TO})"
        )


def refuse_if_outside(conn: Connection, schema: str, relations: Sequence[str], what: str) -> None:
    """Raise `DependentObjects` if anything outside the engine's schemas depends on
    `relations` (directly or through views)."""
    found = [v.name for v in outside(views_over(conn, relations), schema)]
    found += other_dependents(conn, relations)
    if found:
        raise DependentObjects(what, sorted(set(found)))


#: SQLSTATEs of CREATE OR REPLACE VIEW refusing a change of columns
INCOMPATIBLE = (errors.InvalidTableDefinition, errors.DatatypeMismatch)


def replace_view(conn: Connection, schema: str, name: str, query: sql.Composable) -> bool:
    """Create view `name` (schema-qualified, quoted) as `query`, or replace it in place.

    A change PostgreSQL cannot make in place (a column dropped, renamed or retyped) drops and
    re-creates the view when only the engine's own views depend on it (they go too: the
    caller re-creates what is missing), and raises `DependentObjects` otherwise. Returns True
    if the view was dropped and made anew."""
    statement = sql.SQL("CREATE OR REPLACE VIEW {} AS ").format(sql.SQL(name)) + query
    try:
        with conn.transaction():  # a savepoint: the refusal leaves the caller's work intact
            conn.execute(statement)
        return False
    except INCOMPATIBLE as exc:
        reason = str(exc).splitlines()[0]
    refuse_if_outside(conn, schema, [name], f"view {name} must change incompatibly ({reason})")
    conn.execute(sql.SQL("DROP VIEW {} CASCADE").format(sql.SQL(name)))  # only ours go
    conn.execute(sql.SQL("CREATE VIEW {} AS ").format(sql.SQL(name)) + query)
    return True


@dataclass(frozen=True)
class Repoint:
    """The views to replace when tables are swapped, with their definitions taken before,
    a view before the views it reads (the order in which a reader locks them)."""

    definitions: list[tuple[str, str, str]]  # (name, WITH options or '', query)


def plan_repoint(conn: Connection, relations: Sequence[str]) -> Repoint:
    """What `repoint` will do for `relations`; raises `DependentObjects` for what it cannot
    carry over (a materialized view, a view the current user may not replace, a foreign key
    or a function that reads the tables)."""
    views = views_over(conn, relations)
    direct = [v for v in views if v.direct]
    stuck = [v.name for v in direct if v.kind != "v" or not v.ours]
    stuck += other_dependents(conn, relations)
    if stuck:
        raise DependentObjects(
            "the rebuild must replace " + ", ".join(relations) + " and cannot carry these over",
            sorted(set(stuck)),
        )
    previous = one_row(conn.execute("SELECT current_setting('search_path')"))[0]
    conn.execute("SELECT set_config('search_path', '', true)")  # definitions fully qualified
    try:
        definitions = []
        for view in direct:  # deepest first (views_over)
            query, options = one_row(
                conn.execute(
                    "SELECT pg_get_viewdef(%s::regclass), "
                    "coalesce(array_to_string(reloptions, ', '), '') "
                    "FROM pg_class WHERE oid = %s::regclass",
                    (view.name, view.name),
                )
            )
            definitions.append((view.name, options, query.rstrip().rstrip(";")))
    finally:
        conn.execute("SELECT set_config('search_path', %s, true)", (previous,))
    return Repoint(definitions)


def lock(conn: Connection, plan: Repoint) -> None:
    """Lock the views to replace before the tables under them, in the order readers lock
    them (a view, then what it reads), so a reader arriving meanwhile waits for the swap
    instead of deadlocking with it. Each view is replaced by itself: that locks the view alone
    (`LOCK TABLE` on a view would lock its tables too, before the next view's turn)."""
    repoint(conn, plan)


def repoint(conn: Connection, plan: Repoint) -> None:
    """Replace each view that read the swapped-out tables with its own definition, which now
    names the tables moved in under the same names. Its OID, owner, grants and comments stay,
    and so do the views built on it, in any schema."""
    for name, options, query in plan.definitions:
        with_options = f" WITH ({options})" if options else ""
        conn.execute(
            sql.SQL("CREATE OR REPLACE VIEW {}{} AS {}").format(
                sql.SQL(name), sql.SQL(with_options), sql.SQL(query)
            )
        )
