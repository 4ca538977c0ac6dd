"""The account tables of the `leads` projection (docs/accounts.md), beside the projector.

Two kinds of rows. Per aggregate, written as the projector folds: `account_state` (an
account's folded profile) and `account_signals` (what matching reads of a lead). Global,
settled from all of those at once: `account_members` (each lead's match decision) and
`account_scores` (each account's score, points and MQA). `AccountBook` holds the per-aggregate
rows in memory and settles with the pure functions of engine/accounts; it writes only the
global rows that changed. The settled result depends only on the rows, never on the order
they came in, so an incremental projection and a rebuild agree. The MQA is a recorded decision:
the projector takes it when it first sees the account qualify (its trigger: the latest input)
and records it on the Account aggregate (`Account.Qualified`, relayed as `account.qualified`);
`account_state.mqa` keeps it, and a rebuild reads it back instead of deciding again. The
lead-to-account matches are recorded too (`Account.MemberDecided`) as they change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast
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
from engine.domain.facts import profile_of
from engine.domain.rules import AccountMatching, Rules
from engine.domain.scoring import best_of_profile
from engine.projections.registry import ACCOUNT_TABLES, TABLES
from engine.services.application import lead_account

Row = tuple[Any, ...]
_T = TypeVar("_T")
COLUMNS = {t: TABLES[t].names for t in ACCOUNT_TABLES}
KEYS = {t: TABLES[t].key for t in ACCOUNT_TABLES}
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


def signals_row(lead: Lead, engagement: float, rules: Rules) -> Row:
    attrs, origin = profile_of(lead.facts)
    persona = best_of_profile(attrs, origin, rules.personas)  # as lead_state.best_persona
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


class AccountBook:
    """Every account's profile row and every lead's signals row, and the global rows last
    written; `settle` decides again and returns the global rows that changed.

    The first settle (and any under other rules) matches every lead and scores every account.
    After that, settling is incremental: a changed account is put in the match index (its old
    domains and name out, its new ones in) and the leads it can affect are matched again (on
    its old or new domains or below them, with its old or new name, naming it, its members);
    then the tie-breakers' counts and activity of the accounts the changed leads count for are
    updated, the leads whose decision ranked an account whose counts changed are matched
    again, and only the changed accounts and the accounts whose members or members' signals
    changed are scored again. Same rows as matching and scoring everything
    (tests/unit/test_account_book.py).
    An account_state row whose profile is unchanged (the account's own decision events: its
    version, its recorded MQA) matches nothing again; a recorded MQA that changed scores that
    account again."""

    def __init__(self) -> None:
        self.states: dict[str, Row] = {}  # account key -> account_state row
        self.signals: dict[UUID, Row] = {}  # lead id -> account_signals row
        self.members: dict[UUID, Row] = {}  # lead id -> account_members row
        self.scores: dict[str, Row] = {}  # account key -> account_scores row
        self.groups: dict[tuple[str, str], Row] = {}  # (account key, role) -> its row
        self._dirty_leads: set[UUID] = set()
        self._dirty_accounts: set[str] = set()
        self._settled: Rules | None = None  # the rules of the last settle (None: never)
        self._index: MatchIndex | None = None
        self._leads: dict[UUID, LeadSignals] = {}
        self._near: dict[UUID, frozenset[str]] = {}  # lead -> accounts it counts for
        self._near_leads: dict[str, set[UUID]] = {}  # account -> leads counting for it
        self._contested: dict[str, set[UUID]] = {}  # account -> leads that ranked it
        self._members_of: dict[str, set[UUID]] = {}  # account -> its member leads
        self._by_domain: dict[str, set[str]] = {}  # domain -> accounts claiming it
        self._by_name: dict[str, set[str]] = {}  # normalised name -> accounts with it
        self._keys: dict[UUID, tuple[str, ...]] = {}  # lead -> its keys in _leads_by
        self._leads_by: dict[str, set[UUID]] = {}  # d:domain, n:name, a:account -> leads
        self._shared: dict[Any, Any] = {}  # for `_one`
        self._candidates: dict[tuple[str, ...], list[str]] = {}  # one list for equal ones
        self._restored: set[str] = set()  # accounts whose recorded MQA changed: score again
        self._deciding = False
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

    def _one(self, value: _T) -> _T:
        """One object for equal values (near sets, key tuples: most leads share theirs)."""
        return cast(_T, self._shared.setdefault(value, value))

    def put_signals(self, row: Row) -> None:
        if self.signals.get(row[0]) != row:
            # the strings and engagement most leads share with others: one object each
            one = self._one
            row = (row[0], *(one(v) if v is not None else v for v in row[1:4]), row[4],
                   row[5], one(row[6]), row[7] if row[7] is None else one(row[7]))  # fmt: skip
            self.signals[row[0]] = row
            self._dirty_leads.add(row[0])

    def _shared_member(self, row: Row) -> Row:
        """An account_members row whose reason and candidates are one object for all the leads
        that share them (most leads of a domain or company): the book holds a row per lead
        seen, so what it holds per lead is what its memory grows with. Equal to `row`."""
        lead_id, acc, key, rule, reason, candidates, decided, ref = row
        shared = self._candidates.setdefault(tuple(candidates), candidates)
        return (lead_id, acc, key, rule, self._one(reason), shared, decided, self._one(ref))

    def _put_member(self, row: Row) -> None:
        self.members[row[0]] = self._shared_member(row)

    def load(self, cur: Cursor[Any], schema: str) -> None:
        """Everything the tables hold (a projector starting on a schema projected before)."""
        for table, put in (
            ("account_state", self.put_state),
            ("account_signals", self.put_signals),
            ("account_members", self._put_member),
            ("account_scores", lambda r: self.scores.__setitem__(r[1], r)),
            ("account_buying_group", lambda r: self.groups.__setitem__((r[2], r[1]), r)),
        ):
            cur.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table])),
                    sql.Identifier(schema, table),
                )
            )
            for row in cur:  # one row at a time: no list of them all beside the book
                put(tuple(row))

    def settle(
        self, rules: Rules, *, everything: bool = False, decide: bool = False
    ) -> dict[str, list[Row]]:
        """The members, scores and buying-group rows that differ from the ones last written
        (all of them the first time). `everything`: match and score all, never incremental.
        With `decide`, an account that qualifies and has no MQA recorded gets one (in
        `mqa_decisions`, to record, then `recorded`), and every changed match is in
        `member_decisions`; without (a rebuild), the MQA columns are the recorded decisions
        only."""
        self._deciding = decide
        self.mqa_decisions = []
        self.member_decisions = []
        if everything or self._settled is not rules or self._index is None:
            members, rescore = self._match_all(rules)
        elif self._dirty_leads or self._dirty_accounts or self._restored:
            members, rescore = self._match_changed(rules)
        else:
            return {"account_members": [], "account_scores": [], "account_buying_group": []}
        scores, groups = self._rescore(rescore | self._restored, rules)
        self._dirty_leads.clear()
        self._dirty_accounts.clear()
        self._restored.clear()
        self._settled = rules
        return {
            "account_members": members,
            "account_scores": scores,
            "account_buying_group": groups,
        }

    def _match_all(self, rules: Rules) -> tuple[list[Row], set[str]]:
        matching = rules.accounts.matching
        profiles = [_profile(r) for r in self.states.values()]
        self._leads = {lead_id: _signals(r) for lead_id, r in self.signals.items()}
        idx = index(profiles, self._leads.values(), matching)
        self._by_domain = {d: set(v) for d, v in idx.by_domain.items()}
        self._by_name = {n: set(v) for n, v in idx.by_name.items()}
        self._index = MatchIndex(
            dict(idx.accounts), dict(idx.by_domain), dict(idx.by_name), idx.leads, idx.activity
        )
        self._near = {i: self._one(near(ls, idx, matching)) for i, ls in self._leads.items()}
        self._near_leads = {}
        for lead_id, accounts in self._near.items():
            for acc in accounts:
                self._near_leads.setdefault(acc, set()).add(lead_id)
        self._keys, self._leads_by = {}, {}
        for lead_id, ls in self._leads.items():
            self._key_lead(lead_id, ls, matching)
        self._contested, self._members_of = {}, {}
        changed, _ = self._decide(self.signals, rules)
        return changed, set(self.states)

    def _key_lead(self, lead_id: UUID, ls: LeadSignals, matching: AccountMatching) -> None:
        """Index the lead by what an account change can match it on: the domains an account
        could claim for it (its e-mail's domain and parents), its normalised company, the
        account it names. Its old keys go first."""
        for key in self._keys.get(lead_id, ()):
            self._leads_by[key].discard(lead_id)
        keys: list[str] = []
        domain = ls.email_domain
        if domain and domain not in matching.free_mail:
            labels = domain.split(".")
            keys += ["d:" + ".".join(labels[i:]) for i in range(len(labels) - 1)]
        norm = normalise_name(ls.company, matching.legal_suffixes)
        if norm:
            keys.append("n:" + norm)
        if ls.account is not None:
            keys.append("a:" + ls.account)
        self._keys[lead_id] = self._one(tuple(map(self._one, keys)))
        for key in keys:
            self._leads_by.setdefault(key, set()).add(lead_id)

    def _account_changed(self, key: str, matching: AccountMatching) -> set[UUID]:
        """Put account `key`'s new profile in the index; the leads its change can affect:
        those on its old or new domains (or below them), with its old or new name, naming it,
        or its members."""
        assert self._index is not None
        accounts = cast(dict[str, AccountProfile], self._index.accounts)
        by_domain = cast(dict[str, tuple[str, ...]], self._index.by_domain)
        by_name = cast(dict[str, tuple[str, ...]], self._index.by_name)
        old, new = accounts.get(key), _profile(self.states[key])
        lookups = ["a:" + key]
        for profile, join in ((old, False), (new, True)):
            if profile is None:
                continue
            norm = normalise_name(profile.name, matching.legal_suffixes)
            for table, mirror, keys in (
                (self._by_domain, by_domain, [("d:" + d, d) for d in profile.domains]),
                (self._by_name, by_name, [("n:" + norm, norm)] if norm else []),
            ):
                for lookup, k in keys:
                    lookups.append(lookup)
                    held = table.setdefault(k, set())
                    (held.add if join else held.discard)(key)
                    if held:
                        mirror[k] = tuple(sorted(held))
                    else:
                        del table[k], mirror[k]
        accounts[key] = new
        self._index.leads.setdefault(key, 0)
        self._index.activity.setdefault(key, float("-inf"))
        # the leads ranking it are on its old domains or name: among the lookups
        out = set(self._members_of.get(key, ()))
        for lookup in lookups:
            out |= self._leads_by.get(lookup, set())
        return out

    def _match_changed(self, rules: Rules) -> tuple[list[Row], set[str]]:
        """Match again only what the changed leads and accounts can affect (see the class)."""
        matching = rules.accounts.matching
        idx = self._index
        assert idx is not None
        for lead_id in self._dirty_leads:
            ls = self._leads[lead_id] = _signals(self.signals[lead_id])
            self._key_lead(lead_id, ls, matching)
        affected: set[UUID] = set()
        for key in sorted(self._dirty_accounts):
            affected |= self._account_changed(key, matching)
        touched: set[str] = set(self._dirty_accounts)
        for lead_id in self._dirty_leads | affected:
            before = self._near.get(lead_id, frozenset())
            after = self._one(near(self._leads[lead_id], idx, matching))
            self._near[lead_id] = after
            for acc in before - after:
                self._near_leads[acc].discard(lead_id)
            for acc in after - before:
                self._near_leads.setdefault(acc, set()).add(lead_id)
            touched |= before | after
        redecide = self._dirty_leads | affected
        for acc in touched:  # the tie-breakers' inputs of the accounts these leads count for
            leads = self._near_leads.get(acc, set())
            count = len(leads)
            activity = activity_of(idx.accounts[acc], (self._leads[i] for i in leads))
            if idx.leads[acc] != count or idx.activity[acc] != activity:
                idx.leads[acc], idx.activity[acc] = count, activity
                redecide |= self._contested.get(acc, set())
        changed, moved = self._decide(sorted(redecide), rules)
        for lead_id in self._dirty_leads:  # its engagement, persona or activity: its account
            acc = self.members[lead_id][2]
            if acc is not None:
                moved.add(acc)
        return changed, moved | self._dirty_accounts

    def _decide(self, lead_ids: Iterable[UUID], rules: Rules) -> tuple[list[Row], set[str]]:
        """Match these leads; the member rows that changed and the accounts they left or
        joined."""
        assert self._index is not None
        matching, ref = rules.accounts.matching, rules.ref
        changed: list[Row] = []
        moved: set[str] = set()
        for lead_id in lead_ids:
            m = match_lead(self._leads[lead_id], self._index, matching)
            row = self._member_row(lead_id, self.signals[lead_id], m, ref)
            before = self.members.get(lead_id)
            if before is not None and before[2] is not None:
                self._members_of.get(before[2], set()).discard(lead_id)
                for acc in before[5] if len(before[5]) > 1 else ():
                    self._contested.get(acc, set()).discard(lead_id)
            if m.account_id is not None:
                self._members_of.setdefault(m.account_id, set()).add(lead_id)
            for acc in m.candidates if len(m.candidates) > 1 else ():
                self._contested.setdefault(acc, set()).add(lead_id)
            if before != row:
                if self._deciding:
                    self._decided(before, row)
                self.members[lead_id] = row
                changed.append(row)
                moved.update(a for a in (before[2] if before else None, m.account_id) if a)
        return changed, moved

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

    def _rescore(self, accounts: Iterable[str], rules: Rules) -> tuple[list[Row], list[Row]]:
        assert self._index is not None
        changed_scores: list[Row] = []
        changed_groups: list[Row] = []
        for key in sorted(accounts):
            if key not in self.states:
                continue
            profile = self._index.accounts[key]
            lead_ids = sorted(self._members_of.get(key, ()))
            row, groups = self._score_row(profile, lead_ids, rules)
            if self.scores.get(key) != row:
                self.scores[key] = row
                changed_scores.append(row)
            for group in groups:
                if self.groups.get((key, group[1])) != group:
                    self.groups[(key, group[1])] = group
                    changed_groups.append(group)
        return changed_scores, changed_groups

    def _member_row(self, lead_id: UUID, signals: Row, m: Match, ref: str) -> Row:
        decided = signals[4]
        if m.account_id is not None:
            updated = self.states[m.account_id][10]
            decided = max(d for d in (decided, updated) if d is not None) if updated else decided
        acc = self.states[m.account_id][0] if m.account_id is not None else None
        row = (lead_id, acc, m.account_id, m.rule, m.reason, list(m.candidates), decided, ref)
        return self._shared_member(row)

    def _score_row(
        self, profile: AccountProfile, lead_ids: list[UUID], rules: Rules
    ) -> tuple[Row, list[Row]]:
        """The account_scores row and the account_buying_group rows (one per role)."""
        state = self.states[profile.account_id]
        result = score(
            profile,
            (Member(str(i), float(self.signals[i][6]), self.signals[i][7]) for i in lead_ids),
            rules.accounts,
        )
        points = [
            {"part": p.part, "rule": p.rule, "points": p.points, "reason": p.reason}
            for p in result.points
        ]
        mqa = self._mqa(profile, lead_ids, result, rules)
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
        self, profile: AccountProfile, lead_ids: list[UUID], result: AccountScore, rules: Rules
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
        if before is not None and before[8] is not None:
            # taken by a projector before decisions were recorded (migration 22): record it
            at, trigger, ref, reason = before[_MQA]
            decision = MqaDecision(profile.account_id, ref, trigger, at, reason)
        else:
            inputs: list[tuple[datetime, str]] = [(state[10], state[11])] if state[10] else []
            inputs += [(self.signals[i][4], self.signals[i][5]) for i in lead_ids]
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
                score_row = self.scores[key]
                self.scores[key] = (*score_row[:8], *_columns(mqa), *score_row[12:])
                scores.append(self.scores[key])
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
