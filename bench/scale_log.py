"""A big stored log, made fast, through the engine's own write path (issue 21's scale check).

Storing 100,000 accounts and 1,000,000 leads (about 3.1 million events) event by event through
`app.ingest` in batches of 500, in one process, takes hours on the shared machine. This makes
the same log faster with three changes that leave what is stored unchanged:

- the leads go in N processes side by side, each its share of the accounts' leads (account
  `a` goes to process `a % N`), each lead's events in time order, in big batches (one
  transaction each). Every lead's stream, its sealing, hash chain links and identity index rows
  are written by `app.ingest`, as a consumer writes them; only the interleaving of different
  leads' notifications differs. That is safe because nothing in this book is shared between
  leads at ingest: one `form_submitted` touch and a profile never reach MQL (fit at most 40,
  engagement 15: total 27.5 < 50), so nothing is routed (routing queues are the one
  order-dependent shared aggregate), no identity links or merges, no provisional accounts
  (off in the shipped rules), e-mails unique per lead (no duplicate suggestions);
- the log of the same leads with accounts is the log without them, copied whole by PostgreSQL
  (`CREATE DATABASE ... TEMPLATE`: the files, so every table, sequence and key as they are),
  then the 100,000 `account.updated` events ingested on top. Accounts arriving after their
  leads is a log a real CRM sync gives too; matching is a function of the sets of accounts and
  leads, not of their order (docs/accounts.md);
- no projection runs while it is made (the rebuild is what is measured).

`tests/integration/test_scale_log.py` proves it: a small log made this way (two processes, the
copy, accounts on top) and the same events ingested normally (one process, every event in time
order, accounts first) give identical rows in every projection after `projections rebuild`, and
`verify` finds both intact with the same counts.

Each lead: `lead.captured` (e-mail on its account's domain, 10% on free mail; company name),
`lead.profile_updated` (seniority, country), one `touch.form_submitted`. Each account (5% share
a name with another: tie-breakers decide) has one `account.updated` with its domain.

Usage (databases `<prefix>_plain` and `<prefix>_accounts`, schema `scale`, on
LEADENGINE_DATABASE_URL's server):
    python bench/scale_log.py --accounts 100000 --workers 2 --prefix t3scale_100000
Then `python bench/accounts_scale.py --scale-db t3scale_100000` rebuilds both.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402

LEADS_PER_ACCOUNT = 10
SCHEMA = "scale"
T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
SENIORITY = ("c-level", "vp", "director", "manager", "individual", "senior", "junior")
WORDS = ("nord", "alpha", "blue", "summit", "river", "pixel", "atlas", "cobalt", "delta", "ember")
MARKER = "bench_log_made"


def _event(
    eid: str, type_: str, subject: str, data: dict[str, Any], at: datetime
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": eid,
        "source": "urn:bench",
        "type": type_,
        "subject": subject,
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def _rng(seed: int, a: int, salt: int) -> random.Random:
    """One account's own draws: the same whichever process or size makes it."""
    return random.Random(seed * 1_000_003 + a * 7 + salt)


def company(a: int, seed: int) -> str:
    rng = _rng(seed, a, 0)
    return f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {a // 20}"


def lead_events(a: int, seed: int) -> list[dict[str, Any]]:
    """Account `a`'s leads' events, each lead's in time order (captured, profile, a touch)."""
    rng = _rng(seed, a, 1)
    name, domain = company(a, seed), f"acct{a}.example"
    start = T0 + timedelta(minutes=a)
    out: list[dict[str, Any]] = []
    for p in range(LEADS_PER_ACCOUNT):
        lead = f"lead-{a}-{p}"
        at = start + timedelta(hours=1 + p)
        email = f"p{p}.{a}@" + ("gmail.com" if rng.random() < 0.1 else domain)
        out.append(
            _event(f"c-{a}-{p}", "lead.captured", lead, {"email": email, "company": name}, at)
        )
        profile = {"seniority": rng.choice(SENIORITY), "country": "US"}
        out.append(
            _event(f"p-{a}-{p}", "lead.profile_updated", lead, profile, at + timedelta(minutes=5))
        )
        touch = {"channel": rng.choice(("web", "email", "paid_search")), "form": "demo"}
        out.append(
            _event(f"t-{a}-{p}", "touch.form_submitted", lead, touch, at + timedelta(hours=2))
        )
    return out


def account_event(a: int, seed: int) -> dict[str, Any]:
    """Account `a`'s `account.updated` (5% share their company's name with others)."""
    rng = _rng(seed, a, 2)
    base = company(a, seed)
    name = base if rng.random() < 0.05 else f"{base} {a}"
    data = {
        "name": f"{name} {rng.choice(('Inc.', 'Ltd', 'GmbH', ''))}".strip(),
        "domains": [f"acct{a}.example"],
        "industry": rng.choice(("software", "saas", "retail", "healthcare")),
        "employees": rng.choice((40, 250, 1200, 8000)),
        "country": rng.choice(("US", "GB", "DE", "BR")),
        "tier": rng.choice((1, 2, 3)),
    }
    return _event(f"a-{a}", "account.updated", f"acct-{a}", data, T0 + timedelta(minutes=a))


def normal_order(accounts: int, seed: int) -> list[dict[str, Any]]:
    """Every event of the book in time order, accounts first at equal times: what a normal
    single consumer would ingest (the reference the fast way is checked against)."""
    events = [account_event(a, seed) for a in range(accounts)]
    for a in range(accounts):
        events.extend(lead_events(a, seed))
    return sorted(events, key=lambda e: (e["time"], e["type"] != "account.updated", e["id"]))


def settings_for(url: str, home: str | None) -> Any:
    """The bench's settings (its master key file), or those of another home (a test's)."""
    settings = common.settings_for(url, SCHEMA)
    return settings if home is None else settings.model_copy(update={"home": Path(home)})


def _chunks(events: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for e in events:
        chunk.append(e)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ingest(
    url: str, events: Iterator[dict[str, Any]], batch: int, label: str, home: str | None = None
) -> int:
    """`events` through `app.ingest`, `batch` per transaction; the number stored."""
    from engine.domain.contract import validate_event
    from engine.postgres import db as dbmod
    from engine.runtime import open_runtime

    database = dbmod.from_url(url, SCHEMA)
    done, t0 = 0, time.perf_counter()
    with open_runtime(settings_for(url, home), database=database) as rt:
        for chunk in _chunks(events, batch):
            result = rt.app.ingest([validate_event(e) for e in chunk])
            if result.rejected:
                sys.exit(f"{label}: refused {result.rejected[:3]}")
            done += len(chunk)
            rt.app.clear_cache()  # nothing is read back: keep the process small
            if done // batch % 20 == 0:
                rate = done / (time.perf_counter() - t0)
                print(f"{label}: {done:,} events ({rate:,.0f}/s)", file=sys.stderr, flush=True)
    return done


def url_of(url: str, dbname: str) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=dbname)


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def _copy(url: str, source: str, target: str) -> None:
    """CREATE DATABASE target TEMPLATE source, waiting for the source's last sessions to end
    (a server process can outlive its client's disconnect by a moment)."""
    import psycopg

    for _ in range(60):
        try:
            _admin(url, f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
            return
        except psycopg.errors.ObjectInUse:
            time.sleep(0.5)
    _admin(url, f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


def made(url: str) -> bool:
    """Whether the log in the database at `url` was made to the end."""
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{MARKER}",)).fetchone()
    except psycopg.OperationalError:
        return False
    return bool(row and row[0])


def drop(url: str, prefix: str) -> None:
    for variant in ("plain", "accounts"):
        _admin(url, f'DROP DATABASE IF EXISTS "{prefix}_{variant}" WITH (FORCE)')


def make(
    url: str,
    prefix: str,
    accounts: int,
    seed: int,
    workers: int,
    batch: int,
    home: str | None = None,
) -> None:
    """Databases `<prefix>_plain` (the leads) and `<prefix>_accounts` (the same, copied, plus
    the accounts), schema `scale`; nothing done again for a database already made."""
    from engine.postgres import db as dbmod
    from engine.runtime import open_runtime

    plain, with_accounts = url_of(url, f"{prefix}_plain"), url_of(url, f"{prefix}_accounts")
    if not made(plain):
        drop(url, prefix)
        _admin(url, f'CREATE DATABASE "{prefix}_plain"')
        with open_runtime(settings_for(plain, home), database=dbmod.from_url(plain, SCHEMA)):
            pass  # the schema, migrated, and the key store, before the writers start
        t0 = time.perf_counter()
        common = [sys.executable, __file__, "--phase", "leads", "--url", plain]
        common += ["--accounts", str(accounts), "--seed", str(seed), "--batch", str(batch)]
        common += ["--parts", str(workers), *(["--home", home] if home else [])]
        procs = [subprocess.Popen([*common, "--part", str(i)]) for i in range(workers)]
        if any(p.wait() for p in procs):
            sys.exit("a lead writer failed")
        print(f"leads stored in {time.perf_counter() - t0:,.0f} s", file=sys.stderr, flush=True)
        _admin(plain, f"CREATE TABLE {SCHEMA}.{MARKER} ()")
    if not made(with_accounts):
        _admin(url, f'DROP DATABASE IF EXISTS "{prefix}_accounts" WITH (FORCE)')
        _copy(url, f"{prefix}_plain", f"{prefix}_accounts")
        _admin(with_accounts, f"DROP TABLE {SCHEMA}.{MARKER}")
        events = (account_event(a, seed) for a in range(accounts))
        ingest(with_accounts, events, batch, "accounts", home)
        _admin(with_accounts, f"CREATE TABLE {SCHEMA}.{MARKER} ()")


def main() -> None:
    import os

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=3000, help="events per transaction")
    parser.add_argument("--prefix", help="database names' prefix (default t3scale_<accounts>)")
    parser.add_argument("--drop", action="store_true", help="drop the two databases and stop")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["leads"], help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "leads":
        share = (e for a in range(args.part, args.accounts, args.parts)
                 for e in lead_events(a, args.seed))  # fmt: skip
        ingest(args.url, share, args.batch, f"leads {args.part + 1}/{args.parts}", args.home)
        return
    url = args.url or os.environ.get("LEADENGINE_DATABASE_URL")
    if not url:
        sys.exit("set LEADENGINE_DATABASE_URL (a server where databases can be created)")
    prefix = args.prefix or f"bench_scale_{args.accounts}_{args.seed}"
    if args.drop:
        drop(url, prefix)
        return
    t0 = time.perf_counter()
    make(url, prefix, args.accounts, args.seed, args.workers, args.batch)
    print(f"{prefix}_plain and {prefix}_accounts made in {time.perf_counter() - t0:,.0f} s")


if __name__ == "__main__":
    main()
