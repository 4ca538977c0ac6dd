"""Arrays packed in one pass (engine/postgres/binarray.py) reach PostgreSQL as the same values
psycopg's own element-by-element dump sends."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.postgres import binarray
from engine.postgres import db as dbmod

BIGINT = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ints=st.lists(BIGINT, max_size=40), strs=st.lists(TEXT, max_size=40))
def test_packed_arrays_read_back_as_psycopgs_own(
    database: dbmod.Database, ints: list[int], strs: list[str]
) -> None:
    with database.connect() as conn:
        statement = (
            "SELECT %b::bigint[], %b::text[], %b::bigint[] = %b::bigint[], %b::text[] = %b::text[]"
        )
        row = conn.execute(
            statement,
            (binarray.int8s(ints), binarray.texts(strs),
             binarray.int8s(ints), ints, binarray.texts(strs), strs),
        ).fetchone()  # fmt: skip
    assert row == (ints, strs, True, True)


def test_a_bigint_out_of_range_and_a_null_are_refused() -> None:
    for bad in ([2**63], [None]):
        try:
            binarray.int8s(bad)  # type: ignore[arg-type]
        except (OverflowError, TypeError):
            continue
        raise AssertionError(f"{bad} was packed")
