"""The write-side account directory (docs/accounts.md#account-owner-routing).

`account_directory(account_key, name, name_words, domains, owner, tier, updated_at)`: each
account's profile as its own stream folds it (`engine.domain.accounts.profile.fold`), written
in the transaction that saves the account's update, so the routing step of any consumer finds,
at routing time, the accounts a lead can match by domain or name: those claiming its e-mail
domain or a parent, those whose name's words start with its company's normalised words
(`name_words` keeps the legal suffixes, so the rules' list is applied when matching).
Migration 24 makes it and fills it from `account_state` (accounts projected before); an
account not projected then gets its row with its next update.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor, sql
from psycopg.rows import tuple_row

from engine.aggregates.account import PROVISIONAL
from engine.domain.accounts.matching import domain_parents, name_words
from engine.domain.accounts.profile import AccountProfile
from engine.postgres.db import Connection

TABLE = "account_directory"

#: the provisional accounts alone: each CRM account's update asks which provisional accounts
#: sit on its domains, and without it that was a scan of the whole directory per update (a
#: sync of 100,000 accounts fell to 77 updates/s). Its predicate is the lookups' own text,
#: which is what lets the planner use a partial index.
PROVISIONAL_INDEX = (
    "CREATE INDEX IF NOT EXISTS account_directory_provisional ON {s}.account_directory "
    "(account_key) WHERE account_key LIKE 'provisional/%'"
)

DDL = (
    "CREATE TABLE IF NOT EXISTS {s}.account_directory (account_key text PRIMARY KEY, "
    "name text, name_words text, domains text[] NOT NULL DEFAULT ARRAY[]::text[], owner text, "
    "tier int, updated_at timestamptz)",
    "CREATE INDEX IF NOT EXISTS account_directory_domains ON {s}.account_directory "
    "USING gin (domains)",
    "CREATE INDEX IF NOT EXISTS account_directory_words ON {s}.account_directory "
    "(name_words text_pattern_ops)",
    PROVISIONAL_INDEX,
)

#: a directory row: (account_key, name, name_words, domains, owner, tier, updated_at)
Row = tuple[str, str | None, str | None, list[str], str | None, int | None, datetime | None]


def create(conn: Connection, schema: str) -> None:
    """Make the table (idempotent) and fill it from `account_state` where it has no row."""
    s = sql.Identifier(schema)
    for statement in DDL:
        conn.execute(sql.SQL(statement).format(s=s))
    found = conn.execute("SELECT to_regclass(%s)", (f"{schema}.account_state",)).fetchone()
    if not found or found[0] is None:
        return
    rows = conn.execute(
        sql.SQL(
            "SELECT account_key, name, domains, owner, tier, updated_at FROM {}.account_state"
        ).format(s)
    ).fetchall()
    fill = [(r[0], r[1], name_words(r[1]), list(r[2] or ()), r[3], r[4], r[5]) for r in rows]
    if fill:
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {}.account_directory VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (account_key) DO NOTHING"
                ).format(s),
                fill,
            )


def row_of(profile: AccountProfile) -> Row:
    return (
        profile.account_id,
        profile.name,
        name_words(profile.name),
        list(profile.domains),
        profile.owner,
        profile.tier,
        profile.updated_at,
    )


def write(cur: Cursor[Any], schema: str, rows: Sequence[Row]) -> None:
    """Upsert `rows` (inside the save's transaction: the account's events and its row commit
    together)."""
    cur.executemany(
        sql.SQL(
            "INSERT INTO {}.account_directory VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (account_key) DO UPDATE SET name = excluded.name, "
            "name_words = excluded.name_words, domains = excluded.domains, "
            "owner = excluded.owner, tier = excluded.tier, updated_at = excluded.updated_at"
        ).format(sql.Identifier(schema)),
        list(rows),
    )
    _check_claims(cur, schema, rows)


def _check_claims(cur: Cursor[Any], schema: str, rows: Sequence[Row]) -> None:
    """A provisional account and a CRM account never both claim a domain: a save that would
    make them (another consumer committed the other side after this batch read the directory)
    fails as a version race does (its transaction aborted) and is redone on fresh reads,
    which see the other side (no provisional account then, or an adoption). Inserts are
    serialised on the events table's lock, so what committed before is seen here.

    The checks run on their own cursor: the save runs in pipeline mode, where the upserts'
    results (`INSERT 0 1` each) still in flight are handed to `cur` as they arrive; a SELECT
    on `cur` read while some were pending got one of them ("the last operation didn't
    produce records") once a batch had a few thousand rows. One query a side, not one a
    row: each fetch in a pipeline waits for the server, with the events table locked."""
    opened = [r for r in rows if r[0].startswith(PROVISIONAL) and r[3]]
    crm = [r for r in rows if not r[0].startswith(PROVISIONAL) and r[3]]
    if not opened and not crm:
        return
    table = sql.SQL("{}.account_directory").format(sql.Identifier(schema))
    with cur.connection.cursor(row_factory=tuple_row) as check:
        if opened:
            parents = sorted({p for r in opened for p in domain_parents(r[3][0])})
            check.execute(
                sql.SQL(
                    "SELECT account_key, domains FROM {} WHERE account_key NOT LIKE "
                    "'provisional/%%' AND domains && %s::text[] ORDER BY account_key LIMIT 1"
                ).format(table),
                (parents,),
            )
            found = check.fetchone()
            if found is not None:
                row = next(r for r in opened if set(domain_parents(r[3][0])) & set(found[1]))
                _conflict(
                    check, f"provisional account {row[0]} raced an account claiming its domain"
                )
        if crm:
            claimed = sorted({d for r in crm for d in r[3]})
            check.execute(
                sql.SQL(
                    "SELECT account_key, domains[1] FROM {} WHERE account_key LIKE "
                    "'provisional/%%' AND {} ORDER BY account_key LIMIT 1"
                ).format(table, _under_any(_CLAIMED)),
                (claimed,),
            )
            found = check.fetchone()
            if found is not None:
                row = next(r for r in crm if under(found[1], r[3]))
                _conflict(check, f"account {row[0]} raced a provisional account on its domains")


#: a provisional account's domain in SQL: the one it claims (its first; none once adopted),
#: or the one in its key (claimed or not)
_CLAIMED = sql.SQL("domains[1]")
_KEYED = sql.SQL("substr(account_key, {})").format(sql.Literal(len(PROVISIONAL) + 1))


def _under_any(domain: sql.Composable) -> sql.Composable:
    """SQL: `domain` is one of the `%s::text[]` parameter's domains or below one (`under`);
    a NULL domain (nothing claimed) is under none."""
    return sql.SQL(
        "EXISTS (SELECT 1 FROM unnest(%s::text[]) d WHERE {0} = d "
        "OR right({0}, length(d) + 1) = '.' || d)"
    ).format(domain)


def provisional_statement(table: sql.Composable, *, claiming: bool) -> sql.Composed:
    """The provisional accounts on the `%s::text[]` domains or below (`_provisional`); its
    `LIKE` is `PROVISIONAL_INDEX`'s predicate, so it reads that index, not every account."""
    return sql.SQL(
        "SELECT account_key FROM {} WHERE account_key LIKE 'provisional/%%' AND {} ORDER BY 1"
    ).format(table, _under_any(_CLAIMED if claiming else _KEYED))


def _conflict(cur: Cursor[Any], message: str) -> None:
    """Fail the save's transaction as a version race does (SQLSTATE 23505: eventsourcing's
    IntegrityError), in the database, so nothing of it commits."""
    cur.execute(
        sql.SQL(
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'unique_violation', MESSAGE = {}; END $$"
        ).format(sql.Literal(message))
    )
    cur.execute("SELECT 1")
    cur.fetchone()  # the error surfaces here (the save runs in a pipeline)
    raise IntegrityError(message)  # not reached


def under(domain: str, claimed: Iterable[str]) -> bool:
    """`domain` is one of `claimed` or a subdomain of one."""
    return any(domain == d or domain.endswith("." + d) for d in claimed)


def _like(words: str) -> str:
    return words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + " %"


class AccountDirectory:
    """The directory in memory (the in-memory store's): account key -> row."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def put(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.rows[row[0]] = row

    def candidates(
        self, account: str | None, email_domain: str | None, company_words: str | None
    ) -> list[AccountProfile]:
        """The accounts a lead can match: the one it names, those claiming its e-mail domain
        or a parent, those whose name's words are its company's words or start with them."""
        parents = set(domain_parents(email_domain))
        out = []
        for row in self.rows.values():
            words = row[2]
            if (
                row[0] == account
                or parents.intersection(row[3])
                or (
                    company_words is not None
                    and words is not None
                    and (words == company_words or words.startswith(company_words + " "))
                )
            ):
                out.append(_profile(row))
        return out

    def provisional_under(self, domains: Sequence[str]) -> list[str]:
        """The open, not adopted, provisional accounts whose domain is one of `domains` or a
        subdomain of one (what a CRM account claiming `domains` adopts)."""
        return self._provisional(domains, claiming=True)

    def provisional_keys_under(self, domains: Sequence[str]) -> list[str]:
        """Every provisional account (open, adopted or not) whose domain is one of `domains`
        or a subdomain of one: those a CRM account dropping `domains` may have adopted."""
        return self._provisional(domains, claiming=False)

    def _provisional(self, domains: Sequence[str], *, claiming: bool) -> list[str]:
        """The provisional accounts on `domains` or below, by key; `claiming`: only those
        claiming their domain now (the domain is then their row's first), else all (the
        domain is in the key)."""
        return sorted(
            row[0]
            for row in self.rows.values()
            if row[0].startswith(PROVISIONAL)
            and (row[3] or not claiming)
            and under(row[3][0] if claiming else row[0].removeprefix(PROVISIONAL), domains)
        )

    def snapshot(self, most: int) -> AccountDirectory | None:
        """The directory in memory if asking it there is cheaper than asking it (here: it is
        in memory already, so None: ask it)."""
        return None


#: the most rows a batch reads whole (`BatchReads`): beyond, it asks the table per question
SNAPSHOT_MOST = 5000


class BatchReads:
    """What one ingest batch asks the directory, each answer read once.

    The directory changes only with a save (this batch's goes in its own transaction, after
    its decisions; a batch's own account updates are overlaid by the caller), so within a
    batch the same question has the same answer, up to other writers committing meanwhile,
    which a read per question would see at one moment as arbitrary as another (and the
    save's claim check catches a claim raced in the meantime). A directory of at most
    `SNAPSHOT_MOST` rows is read whole at the batch's first question, in one round trip,
    and answered in memory; a larger one is asked per distinct question. A consume profile
    found 1,537 directory round trips in 19 batches (14 of its 90 s on a loaded machine)
    for a 90-row directory."""

    def __init__(self, directory: AccountDirectory, most: int = SNAPSHOT_MOST) -> None:
        self.directory = directory
        self.most = most
        self._whole: AccountDirectory | None = None
        self._read = False
        self._answers: dict[tuple[str | None, str | None, str | None], list[AccountProfile]] = {}

    def candidates(
        self, account: str | None, email_domain: str | None, company_words: str | None
    ) -> list[AccountProfile]:
        key = (account, email_domain, company_words)
        whole = self._snapshot()
        if whole is not None:
            return whole.candidates(*key)
        found = self._answers.get(key)
        if found is None:
            found = self._answers[key] = self.directory.candidates(*key)
        return found

    def provisional_under(self, domains: Sequence[str]) -> list[str]:
        """`AccountDirectory.provisional_under`, from the snapshot when there is one (each
        account event asked the table: 108 round trips, 1.5 s of a consume profile)."""
        whole = self._snapshot()
        if whole is not None:
            return whole.provisional_under(domains)
        return self.directory.provisional_under(domains)

    def _snapshot(self) -> AccountDirectory | None:
        if not self._read:
            self._read = True
            self._whole = self.directory.snapshot(self.most)
        return self._whole


class PostgresAccountDirectory(AccountDirectory):
    """The same, read from the store's `account_directory` (writes go with the saves)."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__()
        self.datastore = datastore
        self._table = sql.SQL("{}.{}").format(
            sql.Identifier(datastore.schema), sql.Identifier(TABLE)
        )

    def put(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if rows:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as c:
                write(c, self.datastore.schema, rows)

    def candidates(
        self, account: str | None, email_domain: str | None, company_words: str | None
    ) -> list[AccountProfile]:
        parents = domain_parents(email_domain)
        if account is None and not parents and company_words is None:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            c.execute(
                sql.SQL(
                    "SELECT account_key, name, name_words, domains, owner, tier, updated_at "
                    "FROM {} WHERE account_key = %s OR domains && %s::text[] "
                    "OR name_words = %s OR name_words LIKE %s"
                ).format(self._table),
                (
                    account,
                    parents,
                    company_words,
                    _like(company_words) if company_words is not None else None,
                ),
            )
            rows = c.fetchall()
        return [_profile(tuple(r.values()) if isinstance(r, dict) else tuple(r)) for r in rows]

    def snapshot(self, most: int) -> AccountDirectory | None:
        """Every row, in memory, in one query (by key: the same order every time); None if
        there are more than `most`."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(
                sql.SQL(
                    "SELECT account_key, name, name_words, domains, owner, tier, updated_at "
                    "FROM {} ORDER BY account_key LIMIT %s"
                ).format(self._table),
                (most + 1,),
                prepare=True,
            )
            rows = c.fetchall()
        if len(rows) > most:
            return None
        whole = AccountDirectory()
        whole.put((r[0], r[1], r[2], list(r[3] or ()), r[4], r[5], r[6]) for r in rows)
        return whole

    def _provisional(self, domains: Sequence[str], *, claiming: bool) -> list[str]:
        if not domains:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as c:
            c.execute(provisional_statement(self._table, claiming=claiming), (list(domains),))
            return [str(next(iter(r.values())) if isinstance(r, dict) else r[0]) for r in c]


def _profile(row: Any) -> AccountProfile:
    return AccountProfile(
        account_id=row[0],
        name=row[1],
        domains=tuple(row[3] or ()),
        owner=row[4],
        tier=row[5],
        updated_at=row[6],
    )
