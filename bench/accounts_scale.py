"""Accounts at scale: `projections rebuild leads` over a book of N accounts with 10 leads each,
against the same leads without accounts, measured in the same run.

For each size in --accounts, two stored logs (kept per size and seed in schemas
bench_acscale_<variant>_<n>_<seed>; --fresh makes them again):

  plain     the leads' events only (captured, profile with seniority, a touch or two)
  accounts  the same events plus one `account.updated` per account (several accounts share
            a name: tie-breakers decide), some leads naming their account, some on free mail

Each rebuild runs in its own process with one worker (so its peak RSS is the whole rebuild,
account settling included). Then, in the same process, one settle of every account and lead
from the tables (`AccountBook.settle`: what a projector starting on the schema does once),
then one settle after 100 leads got a new latest event (what a streaming batch of leads
costs: incremental), the book reading each lead's rows from the tables. Printed per size:
rebuild seconds and notifications/s, peak RSS, both settle times, and the accounts/plain
ratios; across sizes, how each grows.

--book N...: only the account settling at N accounts (x 10 leads), from account_state and
account_signals rows made directly (no log, so any size runs in minutes) and stored by another
process in a schema of their own (bench_acbook_N_SEED, dropped after): settle all, a batch
changing 10 accounts, a batch of 100 leads, and the settling process's peak RSS. (Before the
book read the leads from the tables, the rows were made in the settling process: its "rows
alone" figure.)

Usage: python bench/accounts_scale.py [--accounts 1000 4000] [--seed 1] [--fresh]
       python bench/accounts_scale.py --book 10000 100000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from common import database_url, peak_rss_mb, run_phase, settings_for  # noqa: E402

from engine.domain.contract import validate_event  # noqa: E402
from engine.postgres import db as dbmod  # noqa: E402
from engine.projections import accounts as accounts_mod  # noqa: E402
from engine.projections.account_leads import TableLeads  # noqa: E402
from engine.projections.accounts import AccountBook  # noqa: E402
from engine.projections.rebuild import rebuild  # noqa: E402
from engine.runtime import open_runtime  # noqa: E402

LEADS_PER_ACCOUNT = 10
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
SENIORITY = ("c-level", "vp", "director", "manager", "individual", "senior", "junior")
WORDS = ("nord", "alpha", "blue", "summit", "river", "pixel", "atlas", "cobalt", "delta", "ember")


def _event(n: int, type_: str, subject: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"s-{n}",
        "source": "urn:bench",
        "type": type_,
        "subject": subject,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def book(accounts: int, seed: int, with_accounts: bool) -> list[dict[str, Any]]:
    """The events of `accounts` accounts' worth of leads, in time order (the same leads and
    lead events with and without accounts)."""
    rng = random.Random(seed)
    acc_rng = random.Random(seed * 31 + 7)  # accounts' own draws: the leads stay the same
    out: list[dict[str, Any]] = []
    n = 0
    for a in range(accounts):
        company = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {a // 20}"
        domain = f"acct{a}.example"
        start = T0 + timedelta(minutes=a)
        key = f"acct-{a}"
        if with_accounts:
            name = company if acc_rng.random() < 0.05 else f"{company} {a}"  # shared names
            data = {
                "name": f"{name} {acc_rng.choice(('Inc.', 'Ltd', 'GmbH', ''))}".strip(),
                "domains": [domain],
                "industry": acc_rng.choice(("software", "saas", "retail", "healthcare")),
                "employees": acc_rng.choice((40, 250, 1200, 8000)),
                "country": acc_rng.choice(("US", "GB", "DE", "BR")),
                "tier": acc_rng.choice((1, 2, 3)),
            }
            n += 1
            out.append(_event(n, "account.updated", key, data, start))
        for p in range(LEADS_PER_ACCOUNT):
            lead = f"lead-{a}-{p}"
            at = start + timedelta(hours=1 + p)
            free = rng.random() < 0.1
            email = f"p{p}.{a}@" + ("gmail.com" if free else domain)
            n += 1
            captured = _event(n, "lead.captured", lead, {"email": email, "company": company}, at)
            if with_accounts and acc_rng.random() < 0.15:
                captured["account"] = key
            out.append(captured)
            n += 1
            profile = {"seniority": rng.choice(SENIORITY), "country": "US"}
            out.append(_event(n, "lead.profile_updated", lead, profile, at + timedelta(minutes=5)))
            for t in range(rng.choice((1, 1, 2, 3))):
                n += 1
                touch = {"channel": rng.choice(("web", "email", "paid_search")), "form": "demo"}
                out.append(
                    _event(n, "touch.form_submitted", lead, touch, at + timedelta(hours=2 + t))
                )
    out.sort(key=lambda e: (e["time"], e["id"]))
    return out


def phase_setup(url: str, schema: str, args: list[int]) -> dict[str, Any]:
    accounts, seed, with_accounts = args
    database = dbmod.from_url(url, schema)
    with open_runtime(settings_for(url, schema), database=database) as rt:
        head = rt.app.recorder.max_notification_id() or 0
        marker = f'"{schema}".bench_log_made'
        with rt.db.connect() as conn:
            made = conn.execute("SELECT to_regclass(%s)", (marker,)).fetchone()
        if head and made and made[0]:
            return {"head": head}
        if head:
            sys.exit(f"{schema} holds a partial log ({head:,} notifications): run with --fresh")
        events = book(accounts, seed, bool(with_accounts))
        print(f"making {schema}: {len(events):,} events", file=sys.stderr, flush=True)
        for i in range(0, len(events), 500):  # short transactions on a loaded machine
            rt.app.ingest([validate_event(e) for e in events[i : i + 500]])
        with rt.db.connect() as conn:
            conn.execute(f"CREATE TABLE {marker} ()")
        return {"head": rt.app.recorder.max_notification_id() or 0}


def phase_rebuild(url: str, schema: str, _args: list[int]) -> dict[str, Any]:
    with open_runtime(settings_for(url, schema)) as rt:
        report = rebuild(rt.app, rt.db, "leads", workers=1)
        rss = peak_rss_mb()
        schema = rt.db.schema
        with rt.db.connect() as conn, conn.transaction() as tx, conn.cursor() as cur:

            def upsert(table: str, rows: list[tuple[Any, ...]]) -> None:
                accounts_mod.upsert(cur, schema, table, rows)

            fresh = AccountBook(TableLeads(cur, schema, upsert))
            t0 = time.perf_counter()
            fresh.load(cur, schema)  # as after a restart: the per-account rows
            loaded = time.perf_counter() - t0
            t0 = time.perf_counter()
            fresh.settle(rt.rules, sink=lambda _table, _rows: None)  # as main: not written
            settle = time.perf_counter() - t0
            # a streaming batch: 100 leads with a new latest event each; settled incrementally
            ids = [r[0] for r in cur.execute(f'SELECT lead_id FROM "{schema}".account_signals')]
            batch = sorted(ids)[:: max(1, len(ids) // 100)][:100]
            del ids
            for row in fresh.leads.signals(batch).values():
                fresh.put_signals((*row[:4], row[4] + timedelta(hours=1), "bench", *row[6:]))
            t0 = time.perf_counter()
            fresh.settle(rt.rules)
            batch_settle = time.perf_counter() - t0
            raise psycopg.Rollback(tx)  # the bench changes nothing
        return {
            "events": report.events,
            "rebuild_s": report.total_seconds,
            "load_s": report.load_seconds,
            "rss": rss,
            "settle_s": settle,
            "batch_settle_s": batch_settle,
            "book_load_s": loaded,
            "rows": report.rows,
        }


def book_rows(accounts: int, seed: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The account_state and account_signals rows a rebuild of `book(accounts, seed, True)`
    writes, made directly (same shapes: shared names, free mail, named accounts)."""
    from decimal import Decimal
    from uuid import UUID

    from engine.aggregates.account import account_id

    rng = random.Random(seed)
    states: list[tuple[Any, ...]] = []
    signals: list[tuple[Any, ...]] = []
    for a in range(accounts):
        company = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {a // 20}"
        name = company if rng.random() < 0.05 else f"{company} {a}"
        start = T0 + timedelta(minutes=a)
        key = f"acct-{a}"
        suffix = rng.choice(("Inc.", "Ltd", "GmbH", ""))
        industry = rng.choice(("software", "saas", "retail", "healthcare"))
        employees = rng.choice((40, 250, 1200, 8000))
        country = rng.choice(("US", "GB", "DE", "BR"))
        tier = rng.choice((1, 2, 3))
        states.append(
            (account_id(key), key, f"{name} {suffix}".strip(), [f"acct{a}.example"], industry,
             employees, None, country, None, tier, start, f"s-a{a}", 1, None)
        )  # fmt: skip
        for p in range(LEADS_PER_ACCOUNT):
            n = a * LEADS_PER_ACCOUNT + p
            domain = "gmail.com" if rng.random() < 0.1 else f"acct{a}.example"
            named = key if rng.random() < 0.15 else None
            engagement = Decimal(rng.choice(("0.00", "4.50", "12.00", "30.00")))
            persona = rng.choice((None, "decision-maker", "champion", "user"))
            at = start + timedelta(hours=3 + p)
            signals.append(
                (UUID(int=n + 1), named, domain, company, at, f"s-l{n}", engagement, persona)
            )
    return states, signals


def _book_tables(url: str, schema: str) -> dbmod.Database:
    """A schema of its own with the account tables only (dropped first)."""
    from psycopg import sql

    from engine.projections.registry import ACCOUNT_TABLES, TABLES

    db = dbmod.from_url(url, schema)
    dbmod.drop_schema(db)
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in ACCOUNT_TABLES:
            for statement in TABLES[table].ddl():
                conn.execute(statement.replace("{s}", f'"{schema}"'))  # type: ignore[arg-type]
    return db


def phase_book_rows(url: str, schema: str, args: list[int]) -> dict[str, Any]:
    """The rows `book_rows` makes, stored (this process holds them; the settling's does not)."""
    from engine.projections import accounts as acc

    accounts, seed = args
    db = _book_tables(url, schema)
    states, signals = book_rows(accounts, seed)
    with db.connect() as conn, conn.transaction(), conn.cursor() as cur:
        acc.copy(cur, schema, "account_state", states)
        acc.copy(cur, schema, "account_signals", signals)
    with db.connect() as conn:  # statistics, as autovacuum gives a table this size soon after
        conn.execute(f'ANALYZE "{schema}".account_state, "{schema}".account_signals')
    return {"rows_rss": peak_rss_mb()}


def phase_book(url: str, schema: str, args: list[int]) -> dict[str, Any]:
    """The account settling alone at `accounts` accounts (rows stored by `book_rows`, read as
    a projector starting on the schema does): settle all, then a batch changing 10 accounts
    (incremental), then a batch of 100 leads."""
    from uuid import UUID

    from engine.domain.rules import load_rules
    from engine.projections import accounts as acc
    from engine.projections.account_leads import TableLeads
    from engine.projections.bulk import Writers
    from engine.projections.registry import ACCOUNT_TABLES

    accounts, _seed = args
    rules = load_rules()
    db = dbmod.from_url(url, schema)
    written = [0]
    writing = [0.0]  # seconds spent writing rows (main's book left them to the projector)
    writers = Writers(schema, extra={t: (acc.COLUMNS[t], acc.KEYS[t]) for t in ACCOUNT_TABLES})
    conn = db.connect()
    writers.prepare(conn, ACCOUNT_TABLES)  # the staging tables, as the projector's connection
    with conn, conn.transaction(), conn.cursor() as cur:

        def copy(table: str, rows: list[tuple[Any, ...]]) -> None:
            acc.copy(cur, schema, table, rows)

        def upsert(table: str, rows: list[tuple[Any, ...]]) -> None:
            """As the projector writes them (a COPY to staging, one merge)."""
            t0 = time.perf_counter()
            written[0] += len(rows)
            writers.merge(cur, table, acc.for_database(table, rows))
            writing[0] += time.perf_counter() - t0

        book_ = AccountBook(TableLeads(cur, schema, copy))
        t0 = time.perf_counter()
        book_.load(cur, schema)
        book_.settle(rules, sink=copy)
        settle = time.perf_counter() - t0
        rss = peak_rss_mb()
        book_.leads = TableLeads(cur, schema, upsert)  # the members are in: merge from now on
        keys = sorted(book_.states)[:: max(1, len(book_.states) // 10)][:10]
        for key in keys:  # a new tier and one more domain each
            row = book_.states[key]
            book_.put_state((*row[:3], [*row[3], f"x-{key}.example"], *row[4:9], 1, *row[10:]))
        t0 = time.perf_counter()
        writing[0] = 0.0
        accounts_batch = book_.settle(rules)
        accounts_s = time.perf_counter() - t0
        accounts_writing = writing[0]
        accounts_rows = sum(len(v) for v in accounts_batch.values()) + written[0]
        leads = accounts * LEADS_PER_ACCOUNT
        ids = [UUID(int=n + 1) for n in range(0, leads, max(1, leads // 100))][:100]
        for row in book_.leads.signals(ids).values():
            book_.put_signals((*row[:4], row[4] + timedelta(hours=1), "bench", *row[6:]))
        t0 = time.perf_counter()
        writing[0] = 0.0
        book_.settle(rules)
        leads_s = time.perf_counter() - t0
        leads_writing = writing[0]
    dbmod.drop_schema(db)
    return {
        "settle_s": settle,
        "rss": rss,
        "accounts_batch_s": accounts_s,
        "accounts_batch_rows": accounts_rows,
        "batch_settle_s": leads_s,
        "accounts_writing_s": accounts_writing,
        "batch_writing_s": leads_writing,
    }


PHASES = {
    "setup": phase_setup,
    "rebuild": phase_rebuild,
    "book_rows": phase_book_rows,
    "book": phase_book,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="make the stored logs again")
    parser.add_argument(
        "--book",
        type=int,
        nargs="+",
        help="instead: only the account settling, from rows made in memory, at these sizes",
    )
    parser.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--args", type=int, nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        gc.set_threshold(100_000, 50, 100)
        print(json.dumps(PHASES[args.phase](args.url, args.schema, args.args)))
        return
    if args.book:
        print(f"account settling alone (AccountBook), {LEADS_PER_ACCOUNT} leads per account")
        url = database_url()
        for size in args.book:
            common = ["--url", url, "--schema", f"bench_acbook_{size}_{args.seed}", "--args"]
            made = run_phase(__file__, "book_rows", [*common, str(size), str(args.seed)])
            r = run_phase(__file__, "book", [*common, str(size), str(args.seed)])
            print(
                f"{size:>9,} accounts {size * LEADS_PER_ACCOUNT:>10,} leads  settle all "
                f"{r['settle_s']:7.1f} s  peak RSS {r['rss']:7.0f} MB (making the rows, "
                f"another process: {made['rows_rss']:6.0f} MB)  10 accounts changed "
                f"{r['accounts_batch_s']:6.3f} s "
                f"({r['accounts_batch_rows']} rows; writing them "
                f"{r['accounts_writing_s'] * 1000:.1f} ms)  100 leads "
                f"{r['batch_settle_s'] * 1000:6.1f} ms (writing the signals and member rows "
                f"{r['batch_writing_s'] * 1000:.1f} ms)",
                flush=True,
            )
        return
    url = database_url()
    results: dict[tuple[int, str], dict[str, Any]] = {}
    print(f"accounts x {LEADS_PER_ACCOUNT} leads each; projections rebuild leads, 1 worker")
    for size in args.accounts:  # each size printed as soon as it is measured
        for variant in ("plain", "accounts"):
            schema = f"bench_acscale_{variant}_{size}_{args.seed}"
            if args.fresh:
                dbmod.drop_schema(dbmod.from_url(url, schema))
            common = ["--url", url, "--schema", schema, "--args"]
            flag = str(int(variant == "accounts"))
            run_phase(__file__, "setup", [*common, str(size), str(args.seed), flag])
            results[(size, variant)] = run_phase(__file__, "rebuild", common)
        p, a = results[(size, "plain")], results[(size, "accounts")]
        for label, r in (("without accounts", p), ("with accounts", a)):
            print(
                f"{size:>8,} accounts {size * LEADS_PER_ACCOUNT:>9,} leads  {label:<17}"
                f"{r['events']:>10,} notifications  rebuild {r['rebuild_s']:7.1f} s "
                f"({r['events'] / r['rebuild_s']:7,.0f}/s)  peak RSS {r['rss']:6.0f} MB  "
                f"settle all {r['settle_s']:6.2f} s, a batch of 100 leads "
                f"{r['batch_settle_s'] * 1000:6.1f} ms"
            )
        print(
            f"{'':>8}  ratio (with/without): rebuild throughput "
            f"x{(a['events'] / a['rebuild_s']) / (p['events'] / p['rebuild_s']):.2f}, "
            f"peak RSS x{a['rss'] / p['rss']:.2f}",
            flush=True,
        )
    if len(args.accounts) > 1:
        lo, hi = args.accounts[0], args.accounts[-1]
        a0, a1 = results[(lo, "accounts")], results[(hi, "accounts")]
        print(
            f"{lo:,} -> {hi:,} accounts (x{hi / lo:.1f}): rebuild time "
            f"x{a1['rebuild_s'] / a0['rebuild_s']:.2f}, settle all "
            f"x{a1['settle_s'] / a0['settle_s']:.2f}, a batch "
            f"x{a1['batch_settle_s'] / a0['batch_settle_s']:.2f}, "
            f"peak RSS x{a1['rss'] / a0['rss']:.2f}"
        )


if __name__ == "__main__":
    main()
