"""Where the account book keeps its per-lead rows (account_signals, account_members).

The book (engine/projections/accounts.py) holds in memory only what settling needs per
account (profiles, the match index, each account's lead count and latest activity, its score
rows) and the distinct e-mail domains and company names it has seen (to look leads up by the
keys an account change can match them on). Each lead's rows live here: `TableLeads` in the
projection's own tables (the projector, a rebuild: memory flat in the number of leads),
`MemoryLeads` in dicts (unit tests, what-if sized books). Both answer the same questions, so
the book decides the same rows on either (tests/unit/test_account_book.py,
tests/integration/test_account_book_tables.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from itertools import count
from typing import Any, Protocol
from uuid import UUID

from psycopg import Cursor, sql

from engine.projections.registry import TABLES

Row = tuple[Any, ...]
SIGNALS = TABLES["account_signals"].names
MEMBERS = TABLES["account_members"].names
#: rows fetched per round trip when a whole table is streamed (the book's memory per step)
CHUNK = 10_000
#: rows fetched per round trip when accounts' members are streamed one account at a time
#: (an incremental settle: about one account's members held, not CHUNK rows of them)
FETCH = 1_000
_cursors = count()


def _columns(names: Collection[str], alias: str | None = None) -> sql.Composable:
    """`names` as a select list (each `alias.name` with an alias)."""
    return sql.SQL(", ").join(
        sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in names
    )


class LeadRows(Protocol):
    """The per-lead rows, as the book reads and writes them."""

    def signals(self, ids: Collection[UUID]) -> dict[UUID, Row]: ...

    def members(self, ids: Collection[UUID]) -> dict[UUID, Row]: ...

    def on(
        self, domains: Collection[str], companies: Collection[str], named: Collection[str]
    ) -> dict[UUID, Row]:
        """The signals rows whose e-mail domain, company or named account is one of these
        (the values exactly as stored)."""
        ...

    def members_of(self, account_ids: Collection[UUID]) -> dict[UUID, list[Row]]:
        """Each of these accounts' members' signals rows, by account id."""
        ...

    def each_members_of(self, account_ids: Sequence[UUID]) -> Generator[tuple[UUID, list[Row]]]:
        """The same, one account at a time in the order given (an account without members
        left out): what is held is one account's members, not every account's."""
        ...

    def contested(
        self, domains: Collection[str], companies: Collection[str], accounts: Collection[str]
    ) -> set[UUID]:
        """The leads `on` these domains or companies whose member row names more than one
        candidate, one of them in `accounts` (account keys)."""
        ...

    def every_signal(self) -> Iterator[Row]: ...

    def every_lead(self) -> Iterator[tuple[Row, Row | None]]:
        """Every signals row with its member row (None: never decided), by lead id."""
        ...

    def by_account(self) -> Generator[tuple[str, list[Row]]]:
        """Each account with members: its key and its members' signals rows by lead id, the
        accounts in code-point order of their keys."""
        ...

    def put_signals(self, rows: list[Row]) -> None: ...

    def put_members(self, rows: list[Row]) -> None: ...


class MemoryLeads:
    """Every lead's rows in dicts: the reference, and small books."""

    def __init__(self) -> None:
        self.signals_rows: dict[UUID, Row] = {}
        self.member_rows: dict[UUID, Row] = {}

    def signals(self, ids: Collection[UUID]) -> dict[UUID, Row]:
        return {i: self.signals_rows[i] for i in ids if i in self.signals_rows}

    def members(self, ids: Collection[UUID]) -> dict[UUID, Row]:
        return {i: self.member_rows[i] for i in ids if i in self.member_rows}

    def on(
        self, domains: Collection[str], companies: Collection[str], named: Collection[str]
    ) -> dict[UUID, Row]:
        d, c, n = set(domains), set(companies), set(named)
        return {i: r for i, r in self.signals_rows.items() if r[1] in n or r[2] in d or r[3] in c}

    def members_of(self, account_ids: Collection[UUID]) -> dict[UUID, list[Row]]:
        wanted = set(account_ids)
        out: dict[UUID, list[Row]] = {}
        for i in sorted(self.member_rows):
            acc = self.member_rows[i][1]
            if acc in wanted:
                out.setdefault(acc, []).append(self.signals_rows[i])
        return out

    def each_members_of(self, account_ids: Sequence[UUID]) -> Generator[tuple[UUID, list[Row]]]:
        found = self.members_of(account_ids)
        yield from ((i, found[i]) for i in account_ids if i in found)

    def contested(
        self, domains: Collection[str], companies: Collection[str], accounts: Collection[str]
    ) -> set[UUID]:
        wanted = set(accounts)
        return {
            i
            for i, m in self.members(list(self.on(domains, companies, ()))).items()
            if len(m[5]) > 1 and wanted.intersection(m[5])
        }

    def every_signal(self) -> Iterator[Row]:
        return iter(list(self.signals_rows.values()))

    def every_lead(self) -> Iterator[tuple[Row, Row | None]]:
        for i in sorted(self.signals_rows):
            yield self.signals_rows[i], self.member_rows.get(i)

    def by_account(self) -> Generator[tuple[str, list[Row]]]:
        groups: dict[str, list[Row]] = {}
        for i in sorted(self.member_rows):
            key = self.member_rows[i][2]
            if key is not None:
                groups.setdefault(key, []).append(self.signals_rows[i])
        for key in sorted(groups):
            yield key, groups[key]

    def put_signals(self, rows: list[Row]) -> None:
        self.signals_rows.update((r[0], r) for r in rows)

    def put_members(self, rows: list[Row]) -> None:
        self.member_rows.update((r[0], r) for r in rows)


class TableLeads:
    """The rows in the schema's account_signals and account_members tables, read and written
    through `cur` (the batch's transaction: what it writes, it reads back). `write(table,
    rows)` writes rows (a merge for live tables, a COPY into a rebuild's empty ones)."""

    def __init__(
        self, cur: Cursor[Any], schema: str, write: Callable[[str, list[Row]], None]
    ) -> None:
        self.cur, self.schema, self.write = cur, schema, write
        self._jit_off = False

    def _table(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema, name)

    def _by_lead(
        self, table: str, names: Collection[str], ids: Collection[UUID]
    ) -> dict[UUID, Row]:
        """`table`'s rows of these leads, by lead id (its primary key)."""
        if not ids:
            return {}
        query = sql.SQL("SELECT {} FROM {} WHERE lead_id = ANY(%s)").format(
            _columns(names), self._table(table)
        )
        return {r[0]: r for r in self.cur.execute(query, (list(ids),)).fetchall()}

    def signals(self, ids: Collection[UUID]) -> dict[UUID, Row]:
        return self._by_lead("account_signals", SIGNALS, ids)

    def members(self, ids: Collection[UUID]) -> dict[UUID, Row]:
        return self._by_lead("account_members", MEMBERS, ids)

    def on(
        self, domains: Collection[str], companies: Collection[str], named: Collection[str]
    ) -> dict[UUID, Row]:
        if not (domains or companies or named):
            return {}
        query = self._on_query(_columns(SIGNALS))
        keys = (list(domains), list(companies), list(named))
        return {r[0]: r for r in self._without_jit(query, keys)}

    def _on_query(self, columns: sql.Composable) -> sql.Composed:
        """`columns` of the signals rows `on` the keys of three text[] parameters (e-mail
        domains, companies, named accounts), a row once per key it is on."""
        # a loop per key on its column's index, whatever the statistics: on a never-analyzed
        # account_signals the planner takes `col = ANY(...)` with ~100 keys for a quarter of
        # the table and scans all of it (38 ms at 100,000 leads, growing with the book)
        parts = [
            sql.SQL(
                "SELECT s.* FROM unnest(%s::text[]) AS k(v) CROSS JOIN LATERAL "
                "(SELECT {} FROM {} WHERE {} = k.v OFFSET 0) s"
            ).format(columns, self._table("account_signals"), sql.Identifier(column))
            for column in ("email_domain", "company", "named_account")
        ]
        return sql.SQL(" UNION ALL ").join(parts)

    def contested(
        self, domains: Collection[str], companies: Collection[str], accounts: Collection[str]
    ) -> set[UUID]:
        if not (domains or companies) or not accounts:
            return set()
        # ids only, the candidates tested in SQL: every lead near a ranked account (nearly all
        # of them when each batch moves every account's counts) is never held, only these
        query = sql.SQL(
            "SELECT o.lead_id FROM ({}) o CROSS JOIN LATERAL (SELECT candidates FROM {} "
            "WHERE lead_id = o.lead_id OFFSET 0) m "
            "WHERE cardinality(m.candidates) > 1 AND m.candidates && %s::text[]"
        ).format(self._on_query(sql.Identifier("lead_id")), self._table("account_members"))
        keys: tuple[list[str], ...] = (list(domains), list(companies), [], list(accounts))
        return {r[0] for r in self._without_jit(query, keys)}

    def members_of(self, account_ids: Collection[UUID]) -> dict[UUID, list[Row]]:
        if not account_ids:
            return {}
        out: dict[UUID, list[Row]] = {}
        query = self._members_query(sql.SQL("s.lead_id"))
        for r in self._without_jit(query, (list(dict.fromkeys(account_ids)),)):
            out.setdefault(r[0], []).append(tuple(r[1:]))
        return out

    def each_members_of(self, account_ids: Sequence[UUID]) -> Generator[tuple[UUID, list[Row]]]:
        if not account_ids:
            return
        self._no_jit()
        query = self._members_query(sql.SQL("a.n, s.lead_id"))
        held: tuple[UUID, list[Row]] | None = None
        for r in self._stream(query, (list(dict.fromkeys(account_ids)),), FETCH):
            if held is None or held[0] != r[0]:
                if held is not None:
                    yield held
                held = (r[0], [])
            held[1].append(tuple(r[1:]))
        if held is not None:
            yield held

    def _members_query(self, order: sql.Composable) -> sql.Composed:
        """The account id and signals row of each member of the accounts of a uuid[]
        parameter, in `order` (`a.n`: the array's)."""
        # per account, its members by account_members_account_idx, then each one's signals
        # row by its key: index look-ups whatever the planner's statistics (never gathered
        # with autovacuum off: a join over the whole tables otherwise, its time growing with
        # the book, not with the accounts asked for). OFFSET 0 keeps each subquery a loop.
        return sql.SQL(
            "SELECT a.account_id, {} FROM unnest(%s::uuid[]) WITH ORDINALITY AS a(account_id, n) "
            "CROSS JOIN LATERAL (SELECT lead_id FROM {} WHERE account_id = a.account_id "
            "OFFSET 0) m CROSS JOIN LATERAL (SELECT * FROM {} WHERE lead_id = m.lead_id "
            "OFFSET 0) s ORDER BY {}"
        ).format(
            _columns(SIGNALS, "s"),
            self._table("account_members"),
            self._table("account_signals"),
            order,
        )

    def _without_jit(self, query: sql.Composed, params: tuple[Any, ...]) -> list[Row]:
        """The rows of `query` planned without JIT compilation. Without statistics (never
        gathered with autovacuum off) the planner guesses hundreds of members per account,
        costs the index loops above `jit_above_cost` and compiles for ~100 ms a query that
        runs in a few. Off for the rest of this transaction (the batch's: its look-ups and
        merges gain nothing from compiling), set once per `TableLeads`."""
        self._no_jit()
        return self.cur.execute(query, params).fetchall()  # tuples, loaded in one pass

    def _no_jit(self) -> None:
        """JIT off for the rest of the batch's transaction (see `_without_jit`)."""
        if not self._jit_off:
            self.cur.execute("SELECT set_config('jit', 'off', true)")
            self._jit_off = True

    def _members_joined(self, column: str, where: str) -> sql.Composed:
        """The members' account `column` and their signals rows, `where` (and in order)."""
        return sql.SQL("SELECT {}, {} FROM {} m JOIN {} s USING (lead_id) WHERE " + where).format(
            sql.Identifier("m", column),
            _columns(SIGNALS, "s"),
            self._table("account_members"),
            self._table("account_signals"),
        )

    def _stream(
        self, query: sql.Composed, params: tuple[Any, ...] | None = None, size: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """A server-side cursor in the same transaction: `size` (default CHUNK) rows held at a
        time. It reads the rows as they were when it opened, whatever is written while it is
        read."""
        conn = self.cur.connection
        with conn.cursor(name=f"account_book_{next(_cursors)}") as named:
            named.itersize = size or CHUNK
            named.execute(query, params)
            yield from named

    def every_signal(self) -> Iterator[Row]:
        return self._stream(
            sql.SQL("SELECT {} FROM {}").format(_columns(SIGNALS), self._table("account_signals"))
        )

    def every_lead(self) -> Iterator[tuple[Row, Row | None]]:
        width = len(SIGNALS)
        query = sql.SQL("SELECT {}, {} FROM {} s LEFT JOIN {} m USING (lead_id) ORDER BY 1").format(
            _columns(SIGNALS, "s"),
            _columns(MEMBERS, "m"),
            self._table("account_signals"),
            self._table("account_members"),
        )
        for r in self._stream(query):
            row = tuple(r)
            yield row[:width], (row[width:] if row[width] is not None else None)

    def by_account(self) -> Generator[tuple[str, list[Row]]]:
        query = self._members_joined(
            "account_key",
            'm.account_key IS NOT NULL ORDER BY m.account_key COLLATE "C", s.lead_id',
        )
        key: str | None = None
        rows: list[Row] = []
        for r in self._stream(query):
            if r[0] != key:
                if key is not None:
                    yield key, rows
                key, rows = r[0], []
            rows.append(tuple(r[1:]))
        if key is not None:
            yield key, rows

    def put_signals(self, rows: list[Row]) -> None:
        if rows:
            self.write("account_signals", rows)

    def put_members(self, rows: list[Row]) -> None:
        if rows:
            self.write("account_members", rows)
