"""The declaration is what the migrations make: on a schema migrated from nothing (migration 1's
frozen DDL, then every later one), each read-model table has exactly the declared columns in
engine/projections/registry.py, with their types, nullability and defaults, the declared key
and indexes. A change to the declaration without its migration fails here."""

from __future__ import annotations

from engine.projections.registry import TABLES
from engine.runtime import Runtime

#: The registry's short type names as PostgreSQL's format_type() writes them.
SPELLED = {"int": "integer", "timestamptz": "timestamp with time zone"}

COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped"""

KEY = """
SELECT array_agg(a.attname ORDER BY k.ord)
FROM pg_index x CROSS JOIN unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
WHERE x.indrelid = to_regclass(%s) AND x.indisprimary"""

INDEXES = "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s"


def _default(expr: str | None) -> str | None:
    return None if expr is None else expr.split("::")[0]


def test_migrations_make_exactly_the_declared_tables(runtime: Runtime) -> None:
    schema = runtime.db.schema
    with runtime.db.connect() as conn:
        for table in TABLES.values():
            name = f"{schema}.{table.name}"
            found = {
                column: (kind, notnull, _default(default))
                for column, kind, notnull, default in conn.execute(COLUMNS, (name,)).fetchall()
            }
            declared = {
                c.name: (SPELLED.get(c.type, c.type), not c.null, _default(c.default))
                for c in table.columns
            }
            assert found == declared, table.name
            row = conn.execute(KEY, (name,)).fetchone()
            assert row is not None and tuple(row[0]) == table.key, table.name
            indexes = {r[0] for r in conn.execute(INDEXES, (schema, table.name)).fetchall()}
            assert indexes == {f"{table.name}_pkey", *(n for n, _ in table.indexes)}, table.name
