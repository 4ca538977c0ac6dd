"""Account-level journeys (docs/accounts.md#account-funnel-and-attribution): the journeys of an
account's leads as one, so that a won deal on the account credits the touches of all its people.

An account's journey is the union of its members' touches, stage moves, milestones and routings
(each as recorded): it reaches a stage when its first lead does, its revenue is the sum of its
members' won deals, and every attribution model runs over these journeys unchanged, so credits
still add up exactly (engine/analytics/allocate.py). Leads no account matched are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from engine.analytics.journeys import Dataset, Journey
from engine.analytics.load import by_person, count_people, person_keys, stream
from engine.postgres.db import Database


@dataclass(frozen=True, slots=True)
class AccountDataset:
    dataset: Dataset  # one journey per account with a lead in the data, keyed by account id
    leads: int  # lead (person) journeys merged into them
    left_out: int  # lead journeys of no account


def account_keys(db: Database) -> dict[str, str]:
    """Each matched lead's key -> its account's id (account_members, as last settled)."""
    query = sql.SQL(
        "SELECT l.lead_key, m.account_key FROM {} m JOIN {} l USING (lead_id) "
        "WHERE m.account_key IS NOT NULL"
    ).format(sql.Identifier(db.schema, "account_members"), sql.Identifier(db.schema, "lead_state"))
    with db.connect() as conn:
        return {key: account for key, account in conn.execute(query)}


def by_account(ds: Dataset, keys: dict[str, str]) -> AccountDataset:
    """`ds`'s journeys (one per person) merged per account; a person whose key has no account
    is left out (a person counts under the account of its person lead's key)."""
    mine = {j.key: j for j in ds.journeys if j.key in keys}
    merged: dict[str, Journey] = by_person(mine, {k: keys[k] for k in mine}) if mine else {}
    for j in merged.values():
        j.sort()
    journeys = [merged[k] for k in sorted(merged)]
    return AccountDataset(
        Dataset(journeys, ds.costs, ds.as_of), len(mine), len(ds.journeys) - len(mine)
    )


@dataclass(frozen=True, slots=True)
class AccountStream:
    journeys: Iterator[Journey]  # `by_account`'s journeys (attribution-wise), one at a time
    left_out: int  # person journeys of no account


def stream_by_account(
    db: Database,
    as_of: datetime | None = None,
    *,
    occurred_by: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> AccountStream:
    """`by_account` over journeys streamed from the read model, account by account in key
    order: each lead's rows go straight to the account of its person (its person lead's key,
    as `by_account` counts a person), so memory holds one account's journey, not the
    dataset. The union of an account's touches, moves, milestones and routings is
    `by_account`'s (only `stage_now`, which no attribution model reads, may differ: here the
    furthest lead's stage, there the furthest person's)."""
    people = person_keys(db, as_of, occurred_by)
    accounts = account_keys(db)
    leads = {lead: account for lead, account in accounts.items() if lead not in people}
    leads.update((lead, accounts[p]) for lead, p in people.items() if p in accounts)
    left_out = count_people(db, as_of, occurred_by, people, list(accounts))
    journeys = stream(
        db, as_of, occurred_by=occurred_by, progress=progress, grouped=leads, for_paths=True
    )
    return AccountStream(journeys, left_out)
