"""The account tables of the `leads` projection (docs/accounts.md), beside the projector.

Two kinds of rows. Per aggregate, written as the projector folds: `account_state` (an
account's folded profile) and `account_signals` (what matching reads of a lead). Global,
settled from all of those at once: `account_members` (each lead's match decision) and
`account_scores` (each account's score, points and MQA). `AccountBook` holds the per-account
rows in memory, reads each lead's rows from the tables (engine/projections/account_leads.py)
and settles with the pure functions of engine/domain/accounts; it writes only the global rows
that changed. The settled result depends only on the rows, never on the order
they came in, so an incremental projection and a rebuild agree. The MQA is a recorded decision:
the projector takes it when it first sees the account qualify (its trigger: the latest input)
and records it on the Account aggregate (`Account.Qualified`, relayed as `account.qualified`);
`account_state.mqa` keeps it, and a rebuild reads it back instead of deciding again. The
lead-to-account matches are recorded too (`Account.MemberDecided`) as they change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from engine.aggregates.account import Account
from engine.aggregates.lead import Lead
from engine.domain.accounts.matching import (
    LeadSignals,
    Match,
    MatchIndex,
    MemberDecision,
    activity_of,
    domain_parents,
    index,
    match_lead,
    near,
    normalise_name,
)
from engine.domain.accounts.profile import AccountProfile, fold
from engine.domain.accounts.scoring import (
    AccountScore,
    Member,
    MqaDecision,
    decide_mqa,
    score,
)
from engine.domain.rules import AccountMatching, Rules
from engine.projections.account_leads import CHUNK, LeadRows, MemoryLeads
from engine.projections.registry import ACCOUNT_TABLES, TABLES
from engine.projections.rows import Profile, lead_profile
from engine.services.application import lead_account

Row = tuple[Any, ...]
Sink = Callable[[str, list[Row]], None]
#: score rows sent to a sink at a time when settling everything (each holds its members' points)
SCORES_CHUNK = 500
#: leads matched again at a time in an incremental settle (their signals and member rows held)
REDECIDE = 2_000
#: members' points held in score rows before they go to the sink
SCORE_POINTS = 2_000
COLUMNS = {t: TABLES[t].names for t in ACCOUNT_TABLES}
KEYS = {t: TABLES[t].key for t in ACCOUNT_TABLES}
POINTS = 7  # points (a list: fit rules, then each engaged member's) in an account_scores row
_MQA = slice(8, 12)  # mqa_at, mqa_trigger, mqa_rules, mqa_reason in an account_scores row
VERSION = 12  # version in an account_state row
STORED = 13  # mqa (the recorded decision) in an account_state row


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 2))).quantize(Decimal("0.01"))


def state_row(account: Account) -> Row:
    p = fold(account.key, account.updates)
    last = max(account.updates, key=lambda u: (u[0], u[1], u[2]), default=None)
    return (
        account.id,
        account.key,
        p.name,
        list(p.domains),
        p.industry,
        p.employees,
        p.annual_revenue,
        p.country,
        p.owner,
        p.tier,
        p.updated_at,
        last[2] if last else None,
        account.version,
        account.mqa,
    )


def signals_row(lead: Lead, engagement: float, rules: Rules, known: Profile | None = None) -> Row:
    """A lead's `account_signals` row (`known`: its profile, if the caller has it already)."""
    known = known or lead_profile(lead, rules)
    attrs, persona = known.attrs, known.persona  # as lead_state.best_persona
    last = max(lead.facts, key=lambda f: (f.occurred_at, f.seq))
    return (
        lead.id,
        lead_account(lead),
        attrs.get("email_domain"),
        attrs.get("company"),
        last.occurred_at,
        last.event_id,
        _money(engagement),
        persona.persona if persona else None,
    )


@dataclass(frozen=True, slots=True)
class Held:
    """An account_scores row as the book keeps it: equal rows, equal `Held`s."""

    digest: bytes
    mqa: tuple[Any, ...]  # mqa_at, mqa_trigger, mqa_rules, mqa_reason

    @classmethod
    def of(cls, row: Row) -> Held:
        # json's C encoder walks the row (its points are a dict per member) several times
        # faster than a Python pass: an incremental settle digests every account it scores
        text = json.dumps(row, sort_keys=True, default=_canonical).encode()
        return cls(hashlib.blake2b(text, digest_size=16).digest(), tuple(row[_MQA]))


def _canonical(value: Any) -> str:
    """A value JSON has no form for, as a row read back from the tables and one made here
    both give it: instants in UTC; numbers and ids tagged with their type."""
    if isinstance(value, datetime):
        return "t:" + value.astimezone(UTC).isoformat()
    return f"{type(value).__name__}:{value}"


class AccountBook:
    """What settling needs per account (every account's profile row, the match index with
    each account's lead count and latest activity, the score and buying-group rows last
    written) and the distinct e-mail domains and companies seen; each lead's signals and
    member rows stay in `leads` (the tables, for a projector: memory flat in the leads).
    `settle` decides again, writes the member rows that changed to `leads` and returns the
    score and buying-group rows that changed.

    The first settle (and any under other rules) streams every lead twice (its lead counts
    and activity, then its match) and scores the accounts in key order, one account's members
    at a time. After that, settling is incremental: a changed account is put in the match
    index (its old domains and name out, its new ones in) and the leads it can affect are
    read and matched again (on its old or new domains or below them, with its old or new
    name, naming it, its members); then the tie-breakers' counts and activity of the accounts
    the changed leads count for are counted again from those accounts' leads, the leads whose
    decision ranked an account whose counts changed are matched again, and only the changed
    accounts and the accounts whose members or members' signals changed are scored again,
    each from its members' rows. Same rows as matching and scoring everything
    (tests/unit/test_account_book.py; on the tables: tests/integration/test_account_book_tables.py).
    An account_state row whose profile is unchanged (the account's own decision events: its
    version, its recorded MQA) matches nothing again; a recorded MQA that changed scores that
    account again."""

    def __init__(self, leads: LeadRows | None = None) -> None:
        self.leads: LeadRows = MemoryLeads() if leads is None else leads
        self.states: dict[str, Row] = {}  # account key -> account_state row
        #: account key -> its account_scores row as last written: a digest of it (the row
        #: holds a point per member) and its MQA columns
        self.scores: dict[str, Held] = {}
        self._scored: dict[str, Row] = {}  # the rows of the accounts the last settle decided
        self.groups: dict[tuple[str, str], Row] = {}  # (account key, role) -> its row
        self._pending: dict[UUID, Row] = {}  # signals rows put since the last settle
        self._dirty_accounts: set[str] = set()
        self._settled: Rules | None = None  # the rules of the last settle (None: never)
        self._index: MatchIndex | None = None
        self._by_domain: dict[str, set[str]] = {}  # domain -> accounts claiming it
        self._by_name: dict[str, set[str]] = {}  # normalised name -> accounts with it
        #: a domain an account may claim -> the leads' e-mail domains (as stored) on it or
        #: below; a normalised name -> the leads' companies (as stored) normalising to it.
        #: Grow with the distinct domains and companies, never shrink (a superset looked up)
        self._domains: dict[str, set[str]] = {}
        self._companies: dict[str, set[str]] = {}
        self._restored: set[str] = set()  # accounts whose recorded MQA changed: score again
        self._deciding = False
        self._sink: Sink | None = None
        #: the decisions the last deciding `settle` took, for the accounts to record
        #: (`LeadEngine.record_account_decisions`; then `recorded`)
        self.mqa_decisions: list[tuple[MqaDecision, AccountScore | None]] = []
        self.member_decisions: list[MemberDecision] = []

    def put_state(self, row: Row) -> None:
        held = self.states.get(row[1])
        if held == row:
            return
        self.states[row[1]] = row
        if held is None or held[:VERSION] != row[:VERSION]:
            self._dirty_accounts.add(row[1])
        elif held[STORED] != row[STORED]:
            self._restored.add(row[1])

    def put_signals(self, row: Row) -> None:
        """A lead's new account_signals row: written to `leads` by the next settle (which
        compares it with the one there)."""
        self._pending[row[0]] = row

    def load(self, cur: Cursor[Any], schema: str) -> None:
        """The per-account rows the tables hold (a projector starting on a schema projected
        before); the per-lead rows stay there."""
        for table, put in (
            ("account_state", self.put_state),
            ("account_scores", lambda r: self.scores.__setitem__(r[1], Held.of(r))),
            ("account_buying_group", lambda r: self.groups.__setitem__((r[2], r[1]), r)),
        ):
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])),
                    sql.Identifier(schema, table),
                )
            )
            for row in cur:
                put(tuple(row))

    def settle(
        self,
        rules: Rules,
        *,
        everything: bool = False,
        decide: bool = False,
        sink: Sink | None = None,
    ) -> dict[str, list[Row]]:
        """The scores and buying-group rows that differ from the ones last written (all of
        them the first time); the member rows that changed are written to `leads`. With
        `sink`, the scores and buying-group rows go to `sink(table, rows)` instead, a few
        hundred accounts at a time (a score row holds a point per member: settling everything
        would otherwise hold them all), and the lists returned are empty.
        `everything`: match and score all, never incremental. With `decide`, an account that
        qualifies and has no MQA recorded gets one (in `mqa_decisions`, to record, then
        `recorded`), and every changed match is in `member_decisions`; without (a rebuild),
        the MQA columns are the recorded decisions only."""
        self._deciding = decide
        self.mqa_decisions = []
        self.member_decisions = []
        self._scored = {}
        self._sink = sink
        if everything or self._settled is not rules or self._index is None:
            scores, groups = self._settle_all(rules)
        else:
            old = self.leads.signals(list(self._pending))
            dirty = {i: r for i, r in sorted(self._pending.items()) if old.get(i) != r}
            self._pending.clear()
            if not (dirty or self._dirty_accounts or self._restored):
                return {"account_scores": [], "account_buying_group": []}
            rescore, known = self._match_changed(rules, dirty, old)
            scores, groups = self._rescore(rescore | self._restored, rules, known)
        self._dirty_accounts.clear()
        self._restored.clear()
        self._settled = rules
        self._flush(scores, groups, 0)
        return {"account_scores": scores, "account_buying_group": groups}

    def _flush(self, scores: list[Row], groups: list[Row], at_least: int) -> None:
        """Send the rows to the sink (if any) once there are `at_least` score rows, or rows
        holding SCORE_POINTS points (a row holds a point per engaged member: a batch that
        scores every account again would otherwise hold every member's point at once)."""
        if self._sink is None:
            return
        if len(scores) >= at_least or sum(len(r[POINTS]) for r in scores) >= SCORE_POINTS:
            for table, rows in (("account_scores", scores), ("account_buying_group", groups)):
                if rows:
                    self._sink(table, list(rows))
            scores.clear()
            groups.clear()

    def _settle_all(self, rules: Rules) -> tuple[list[Row], list[Row]]:
        """Match and score everything, streaming the leads: the counts and activity, then
        each lead's match (member rows written a chunk at a time), then each account."""
        matching = rules.accounts.matching
        if self._pending:
            self.leads.put_signals(list(self._pending.values()))
            self._pending.clear()
        idx = index((_profile(r) for r in self.states.values()), (), matching)
        self._by_domain = {d: set(v) for d, v in idx.by_domain.items()}
        self._by_name = {n: set(v) for n, v in idx.by_name.items()}
        self._index = idx = MatchIndex(
            dict(idx.accounts), dict(idx.by_domain), dict(idx.by_name), idx.leads, idx.activity
        )
        self._domains, self._companies = {}, {}
        for row in self.leads.every_signal():
            ls = _signals(row)
            self._key(row, ls, matching)
            for acc in near(ls, idx, matching):
                idx.leads[acc] += 1
                if ls.last_activity is not None:
                    idx.activity[acc] = max(idx.activity[acc], ls.last_activity.timestamp())
        chunk: list[Row] = []
        for signals, before in self.leads.every_lead():
            row = self._decide(signals, before, rules)
            if row != before:
                chunk.append(row)
                if len(chunk) >= CHUNK:
                    self.leads.put_members(chunk)
                    chunk = []
        self.leads.put_members(chunk)
        scores: list[Row] = []
        groups: list[Row] = []
        members = self.leads.by_account()
        held = next(members, None)
        for key in sorted(self.states):  # code-point order, as `by_account` gives them
            while held is not None and held[0] < key:  # an account not known
                held = next(members, None)
            rows: list[Row] = []
            if held is not None and held[0] == key:
                rows, held = held[1], next(members, None)
            self._rescore_one(key, rows, rules, scores, groups)
            self._flush(scores, groups, SCORES_CHUNK)
        members.close()  # its server-side cursor, if rows of no known account were left
        return scores, groups

    def _key(self, row: Row, ls: LeadSignals, matching: AccountMatching) -> None:
        """Note the lead's stored e-mail domain under each domain an account could claim for
        it (its e-mail's domain and parents) and its stored company under its normalised
        name: what an account change looks leads up by."""
        domain = ls.email_domain
        if domain and domain not in matching.free_mail:
            for parent in domain_parents(domain):
                self._domains.setdefault(parent, set()).add(row[2])
        norm = normalise_name(ls.company, matching.legal_suffixes)
        if norm:
            self._companies.setdefault(norm, set()).add(row[3])

    def _on(
        self, profiles: Iterable[AccountProfile], matching: AccountMatching, *, names: bool
    ) -> tuple[set[str], set[str]]:
        """The stored e-mail domains on these accounts' domains or below, and (with `names`)
        the stored companies with their names."""
        domains: set[str] = set()
        companies: set[str] = set()
        for p in profiles:
            for d in p.domains:
                domains |= self._domains.get(d, set())
            norm = normalise_name(p.name, matching.legal_suffixes) if names else None
            if norm:
                companies |= self._companies.get(norm, set())
        return domains, companies

    def _account_changed(self, key: str, matching: AccountMatching) -> None:
        """Put account `key`'s new profile in the index."""
        assert self._index is not None
        accounts = cast(dict[str, AccountProfile], self._index.accounts)
        by_domain = cast(dict[str, tuple[str, ...]], self._index.by_domain)
        by_name = cast(dict[str, tuple[str, ...]], self._index.by_name)
        old, new = accounts.get(key), _profile(self.states[key])
        for profile, join in ((old, False), (new, True)):
            if profile is None:
                continue
            norm = normalise_name(profile.name, matching.legal_suffixes)
            for table, mirror, keys in (
                (self._by_domain, by_domain, list(profile.domains)),
                (self._by_name, by_name, [norm] if norm else []),
            ):
                for k in keys:
                    held = table.setdefault(k, set())
                    (held.add if join else held.discard)(key)
                    if held:
                        mirror[k] = tuple(sorted(held))
                    else:
                        del table[k], mirror[k]
        accounts[key] = new
        self._index.leads.setdefault(key, 0)
        self._index.activity.setdefault(key, float("-inf"))

    def _match_changed(
        self, rules: Rules, dirty: dict[UUID, Row], old: dict[UUID, Row]
    ) -> tuple[set[str], dict[str, list[Row]]]:
        """Match again only what the changed leads and accounts can affect (see the class);
        the accounts to score again, and the changed accounts' members' signals rows (by
        lead id: every lead that was or is a member of one was matched again here)."""
        matching = rules.accounts.matching
        idx = self._index
        assert idx is not None
        # the leads a changed account can affect, found on its old and new profile
        changed = sorted(self._dirty_accounts)
        profiles = [
            p for k in changed for p in (idx.accounts.get(k), _profile(self.states[k])) if p
        ]
        domains, companies = self._on(profiles, matching, names=True)
        affected = self.leads.on(domains, companies, changed)
        held = [self.states[k][0] for k in changed if k in idx.accounts]
        for rows in self.leads.members_of(held).values():
            affected.update((r[0], r) for r in rows)
        stored = {**affected, **old}  # as the tables hold them: before this batch
        before = {i: near(_signals(stored[i]), idx, matching) for i in stored}
        self.leads.put_signals(list(dirty.values()))
        for row in dirty.values():
            self._key(row, _signals(row), matching)
        for key in changed:
            self._account_changed(key, matching)
        now = {**affected, **dirty}
        after = {i: near(_signals(row), idx, matching) for i, row in now.items()}
        redecide = set(now)
        ranked = self._counted(changed, stored, before, now, after, matching)
        redecide |= self._contested(ranked, matching)
        # the rows read above are the stored ones (the dirty ones written): only the
        # contested leads' are still to read, REDECIDE leads at a time (when every account's
        # counts move, nearly every lead with several candidates is contested)
        moved: set[str] = set()
        # a changed account's members, before and after: all matched again here
        known: dict[str, list[Row]] = {key: [] for key in changed}
        order = sorted(redecide)
        for start in range(0, len(order), REDECIDE):
            chunk = order[start : start + REDECIDE]
            signals = {i: now[i] for i in chunk if i in now}
            signals.update(self.leads.signals([i for i in chunk if i not in signals]))
            members = self.leads.members(chunk)
            written: list[Row] = []
            for lead_id in chunk:
                before_row = members.get(lead_id)
                row = self._decide(signals[lead_id], before_row, rules)
                if row != before_row:
                    written.append(row)
                    moved.update(a for a in (before_row[2] if before_row else None, row[2]) if a)
                acc = row[2]
                if acc is not None and lead_id in dirty:  # its engagement, persona or activity
                    moved.add(acc)
                if acc in known:
                    known[acc].append(signals[lead_id])
            self.leads.put_members(written)
        return moved | self._dirty_accounts, known

    def _counted(
        self,
        changed: list[str],
        stored: dict[UUID, Row],
        before: dict[UUID, frozenset[str]],
        now: dict[UUID, Row],
        after: dict[UUID, frozenset[str]],
        matching: AccountMatching,
    ) -> list[str]:
        """Bring the tie-breakers' inputs (each account's near leads and latest activity) up
        to date; the accounts whose inputs changed. Only the leads in `now` count for other
        accounts than before (with `stored`: their rows before, `before` and `after`: the
        accounts each counted for), so the other accounts' counts move by theirs and their
        activity rises to the latest; a changed account, or one whose latest activity may
        have left with a lead (or got older), is counted again from its leads' rows."""
        idx = self._index
        assert idx is not None
        empty: frozenset[str] = frozenset()
        counts: dict[str, int] = {}
        latest: dict[str, float] = {}
        again: set[str] = set(changed)
        for lead_id, row in now.items():
            was, now_near = before.get(lead_id, empty), after[lead_id]
            old_row = stored.get(lead_id)
            old_at = old_row[4].timestamp() if old_row is not None and old_row[4] else None
            new_at = row[4].timestamp() if row[4] else None
            for acc in was - now_near:
                counts[acc] = counts.get(acc, 0) - 1
            for acc in now_near - was:
                counts[acc] = counts.get(acc, 0) + 1
            left = old_at is not None and (new_at is None or new_at < old_at)
            for acc in was:  # its old activity may have been the account's latest
                gone = left or acc not in now_near
                if gone and old_at is not None and old_at >= idx.activity[acc]:
                    again.add(acc)
            for acc in now_near:
                counts.setdefault(acc, 0)
                if new_at is not None:
                    latest[acc] = max(latest.get(acc, new_at), new_at)
        ranked: list[str] = []
        for acc in sorted(again | counts.keys()):
            if acc in again:
                continue
            leads = idx.leads[acc] + counts[acc]
            activity = max(idx.activity[acc], latest.get(acc, idx.activity[acc]))
            if idx.leads[acc] != leads or idx.activity[acc] != activity:
                idx.leads[acc], idx.activity[acc] = leads, activity
                ranked.append(acc)
        if again:
            # a changed account's near leads are all in `now` (read on its domains and below
            # and naming it); the others' are read on theirs
            counted: dict[str, list[LeadSignals]] = {acc: [] for acc in sorted(again)}
            for lead_id, row in now.items():
                for acc in after[lead_id].intersection(changed):
                    counted[acc].append(_signals(row))
            recount = sorted(again.difference(changed))
            domains, _ = self._on((idx.accounts[a] for a in recount), matching, names=False)
            for row in self.leads.on(domains, (), recount).values() if recount else ():
                ls = _signals(row)
                for acc in near(ls, idx, matching).intersection(recount):
                    counted[acc].append(ls)
            for acc, leads_of in counted.items():
                activity = activity_of(idx.accounts[acc], leads_of)
                if idx.leads[acc] != len(leads_of) or idx.activity[acc] != activity:
                    idx.leads[acc], idx.activity[acc] = len(leads_of), activity
                    ranked.append(acc)
        return sorted(ranked)

    def _contested(self, accounts: list[str], matching: AccountMatching) -> set[UUID]:
        """The leads whose last match ranked one of these accounts among several candidates
        (on its domains or below, or with its name: where the candidates come from)."""
        if not accounts:
            return set()
        assert self._index is not None
        domains, companies = self._on(
            (self._index.accounts[a] for a in accounts), matching, names=True
        )
        return self.leads.contested(domains, companies, accounts)

    def _decide(self, signals: Row, before: Row | None, rules: Rules) -> Row:
        """Match this lead: its member row (noting the decisions it makes, when deciding)."""
        assert self._index is not None
        m = match_lead(_signals(signals), self._index, rules.accounts.matching)
        row = self._member_row(signals, m, rules.ref)
        if before != row and self._deciding:
            self._decided(before, row)
        return row

    def _decided(self, before: Row | None, row: Row) -> None:
        """The match decisions a changed account_members row makes: the lead leaves the
        account it had, joins the one it has now (or joins it again by another rule). A reason
        that changes alone (a tie-breaker's counts) is no new decision."""
        lead_id, _, key, rule, reason, candidates, decided, ref = row
        had = before[2] if before is not None else None

        def note(account: str, joined: bool) -> None:
            self.member_decisions.append(
                MemberDecision(
                    account,
                    str(lead_id),
                    joined,
                    rule if joined else None,
                    reason,
                    tuple(candidates),
                    ref,
                    decided,
                )
            )

        if before is not None and had is not None and tuple(before[2:4]) != (key, rule):
            # the match it changes, in case its join was never recorded (taken before
            # migration 22): recorded first, flagged, unless the account has it already
            _, _, _, was_rule, was_reason, was_candidates, was_decided, was_ref = before
            self.member_decisions.append(
                MemberDecision(
                    had,
                    str(lead_id),
                    True,
                    was_rule,
                    was_reason,
                    tuple(was_candidates),
                    was_ref,
                    was_decided,
                    baseline=True,
                )
            )
        if had is not None and had != key:
            note(had, False)
        if key is not None and (before is None or before[2:4] != row[2:4]):
            note(key, True)

    def _rescore(
        self, accounts: Iterable[str], rules: Rules, known: dict[str, list[Row]]
    ) -> tuple[list[Row], list[Row]]:
        """Score these accounts again; `known`: members' signals rows already at hand (the
        others' are read)."""
        keys = sorted(k for k in accounts if k in self.states)
        # one account's members at a time (a batch may move nearly every account, and
        # every account's members together grow with the leads), scores flushed as they come
        members = self.leads.each_members_of([self.states[k][0] for k in keys if k not in known])
        held = next(members, None)
        scores: list[Row] = []
        groups: list[Row] = []
        try:
            for key in keys:
                rows = known.get(key, [])
                if key not in known and held is not None and held[0] == self.states[key][0]:
                    rows, held = held[1], next(members, None)
                self._rescore_one(key, rows, rules, scores, groups)
                self._flush(scores, groups, SCORES_CHUNK)
        finally:
            members.close()
        return scores, groups

    def _rescore_one(
        self, key: str, members: list[Row], rules: Rules, scores: list[Row], groups: list[Row]
    ) -> None:
        """Score account `key` from its members' signals rows (by lead id); the rows that
        changed go to `scores` and `groups`."""
        assert self._index is not None
        decided = len(self.mqa_decisions)
        row, rows = self._score_row(self._index.accounts[key], members, rules)
        if len(self.mqa_decisions) > decided:  # for `recorded`
            self._scored[key] = row
        held = Held.of(row)
        if self.scores.get(key) != held:
            self.scores[key] = held
            scores.append(row)
        for group in rows:
            if self.groups.get((key, group[1])) != group:
                self.groups[(key, group[1])] = group
                groups.append(group)

    def _member_row(self, signals: Row, m: Match, ref: str) -> Row:
        decided = signals[4]
        if m.account_id is not None:
            updated = self.states[m.account_id][10]
            decided = max(d for d in (decided, updated) if d is not None) if updated else decided
        acc = self.states[m.account_id][0] if m.account_id is not None else None
        return (signals[0], acc, m.account_id, m.rule, m.reason, list(m.candidates), decided, ref)

    def _score_row(
        self, profile: AccountProfile, members: list[Row], rules: Rules
    ) -> tuple[Row, list[Row]]:
        """The account_scores row and the account_buying_group rows (one per role)."""
        state = self.states[profile.account_id]
        result = score(
            profile,
            (Member(str(r[0]), float(r[6]), r[7]) for r in members),
            rules.accounts,
        )
        points = [
            {"part": p.part, "rule": p.rule, "points": p.points, "reason": p.reason}
            for p in result.points
        ]
        mqa = self._mqa(profile, members, result, rules)
        row = (
            state[0],
            profile.account_id,
            _money(result.fit),
            _money(result.engagement),
            _money(result.total),
            result.members,
            result.engaged,
            points,
            *mqa,
            rules.ref,
            result.segment,
            list(result.roles_covered),
            list(result.roles_missing),
            _money(result.group_engagement),
        )
        groups = [
            (
                state[0],
                r.role,
                profile.account_id,
                r.required,
                r.leads,
                r.engaged,
                r.covered,
                _money(r.best_engagement),
            )
            for r in result.roles
        ]
        return row, groups

    def _mqa(
        self, profile: AccountProfile, members: list[Row], result: AccountScore, rules: Rules
    ) -> tuple[Any, ...]:
        """The MQA decision: the one recorded on the account; else, when deciding, taken now
        if the rule holds, dated at (and triggered by) the latest of the account's update and
        its members' facts, and recorded."""
        state = self.states[profile.account_id]
        if state[STORED] is not None:
            return _columns(state[STORED])
        if not self._deciding:
            return (None, None, None, None)
        decision: MqaDecision | None = None
        before = self.scores.get(profile.account_id)
        if before is not None and before.mqa[0] is not None:
            # taken by a projector before decisions were recorded (migration 22): record it
            at, trigger, ref, reason = before.mqa
            decision = MqaDecision(profile.account_id, ref, trigger, at, reason)
        else:
            inputs: list[tuple[datetime, str]] = [(state[10], state[11])] if state[10] else []
            inputs += [(r[4], r[5]) for r in members]
            if inputs:
                at, trigger = max(inputs)
                decision = decide_mqa(result, rules.accounts, ref=rules.ref, trigger=trigger, at=at)
        if decision is None:
            return (None, None, None, None)
        self.mqa_decisions.append((decision, result))
        stored = _stored(decision)
        self.states[profile.account_id] = (*state[:STORED], stored)
        return _columns(stored)

    def recorded(self, stored: dict[str, dict[str, Any]]) -> tuple[list[Row], list[Row]]:
        """The MQA decisions as the accounts hold them after recording (one recorded before,
        by a run that stopped before its rows, wins): the account_state rows that now carry
        them and the account_scores rows corrected where it differed."""
        states: list[Row] = []
        scores: list[Row] = []
        for key, mqa in stored.items():
            state = self.states[key]
            if state[STORED] != mqa:
                old = self._scored[key]
                row = (*old[:8], *_columns(mqa), *old[12:])
                self.scores[key] = Held.of(row)
                scores.append(row)
            self.states[key] = (*state[:STORED], mqa)
            states.append(self.states[key])
        return states, scores


def _stored(decision: MqaDecision) -> dict[str, Any]:
    """A decision about to be recorded as `Account.mqa` will hold it (its version unknown yet:
    `recorded` puts the stored one in)."""
    return {
        "at": decision.at.isoformat(),
        "trigger": decision.trigger,
        "rules": decision.rules,
        "reason": decision.reason,
        "version": None,
    }


def _columns(stored: dict[str, Any]) -> tuple[Any, ...]:
    """mqa_at, mqa_trigger, mqa_rules, mqa_reason of a recorded decision."""
    at = stored["at"]
    return (
        datetime.fromisoformat(at) if isinstance(at, str) else at,
        stored["trigger"],
        stored["rules"],
        stored["reason"],
    )


def _signals(row: Row) -> LeadSignals:
    return LeadSignals(
        str(row[0]), account=row[1], email_domain=row[2], company=row[3], last_activity=row[4]
    )


def _profile(row: Row) -> AccountProfile:
    return AccountProfile(
        account_id=row[1],
        name=row[2],
        domains=tuple(row[3] or ()),
        industry=row[4],
        employees=row[5],
        annual_revenue=row[6],
        country=row[7],
        owner=row[8],
        tier=row[9],
        updated_at=row[10],
    )


def _adapt(table: str, row: Row) -> Row:
    if table == "account_scores":
        return (*row[:7], Jsonb(row[7]), *row[8:])
    if table == "account_state":
        return (*row[:STORED], None if row[STORED] is None else Jsonb(row[STORED]))
    return row


def for_database(table: str, rows: Iterable[Row]) -> list[Row]:
    """Rows as the database takes them (the points of account_scores as JSON)."""
    return [_adapt(table, r) for r in rows]


def upsert(cur: Cursor[Any], schema: str, table: str, rows: Iterable[Row]) -> None:
    rows = [_adapt(table, r) for r in rows]
    if not rows:
        return
    columns, key = COLUMNS[table], KEYS[table]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c not in key
        ),
    )
    cur.executemany(statement, rows)


def copy(cur: Cursor[Any], schema: str, table: str, rows: Iterable[Row]) -> None:
    """Into an empty table (a rebuild's staging table, no key yet)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    )
    with cur.copy(statement) as out:
        for row in rows:
            out.write_row(_adapt(table, row))
