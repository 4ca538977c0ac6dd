"""A lead's running score: what `scoring.score` gives at the lead's latest moment, kept up to
date one fact at a time instead of re-scoring the whole history on every touch.

Fit is recomputed only when a profile fact arrives. Engagement is split by how rule caps and
type caps couple the rules (each positive (rule, touch type) pair is bound by its rule's cap,
its type's cap, both, or neither; caps sharing a pair form a group):

- no cap (and every negative rule, never capped): a decayed sum, order-free;
- a group with one cap: min(cap, decayed sum), order-free (granting newest first fills the one
  cap whatever the order, so the greedy's total is the capped sum);
- a group with several caps: its touches, each with the (type, rule) pairs that matched it,
  kept in event time; granted newest first exactly as `scoring` does, but a pair whose rule cap
  or type cap is full is dropped from the walk (it could only be granted nothing more), so the
  walk stops once no pair can grant: on a long history, after the few newest touches that fill
  the caps, not after every touch (`lead show` of a 10,000-touch lead). While the group's
  decayed sum is within its smallest cap no cap can bind, so the sum is the grant (no walk).

A decayed sum is kept as a value at a reference moment (its newest touch): a touch after it
rescales the value and adds, a late touch (before it) adds its points decayed to the reference;
either way O(1), and any arrival order gives the same value up to float rounding. Rounding is
why the running score may differ from the full recomputation by one unit in the last place kept
(0.01), never more: `decide_mql` re-scores fully when a value is that close to a threshold, so
MQL decisions are exactly those the full recomputation takes.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.domain.facts import PROFILE_TYPES, Fact, profile_of, profile_values
from engine.domain.rules import (
    Combine,
    Condition,
    EngagementRule,
    FitRule,
    MqlRule,
    ScoringModel,
)
from engine.domain.scoring import DAY_SECONDS, Score, clamp, score

#: How close to an MQL threshold a running value must be for the decision to re-score fully.
#: The running score is within 0.01 of the full one (see the module docstring); 0.05 is margin.
EPSILON = 0.05

Cap = tuple[str, str]  # ("rule", rule id) or ("type", touch type)
Member = tuple[EngagementRule, Cap, Cap]


class Sums:
    """Decayed sums sharing one reference moment `ref` (the newest touch added): slot i holds
    sum of points * 2^(-(ref - t) / half_life) over its decaying touches, plus a flat part
    (rules with `decay: false`, or no half-life). A touch after `ref` rescales every slot
    (one power) and moves `ref`; a late one adds its points decayed to `ref`: O(1) either way,
    and any arrival order gives the same sums up to float rounding."""

    __slots__ = ("decaying", "flat", "half_life", "ref")

    def __init__(self, slots: int, half_life_days: float | None) -> None:
        self.half_life = None if half_life_days is None else half_life_days * DAY_SECONDS
        self.decaying = [0.0] * slots
        self.flat = [0.0] * slots
        self.ref: float | None = None

    def add(self, slot: int, points: float, decays: bool, at: float) -> None:
        if not decays or self.half_life is None:
            self.flat[slot] += points
            return
        if self.ref is None or at > self.ref:
            if self.ref is not None:
                factor = 0.5 ** ((at - self.ref) / self.half_life)
                self.decaying = [v * factor for v in self.decaying]
            self.ref = at
            self.decaying[slot] += points
        else:
            self.decaying[slot] += points * 0.5 ** ((self.ref - at) / self.half_life)

    def factor(self, moment: float) -> float:
        """What the decaying parts are multiplied by as of `moment` (not before `ref`)."""
        if self.ref is None or self.half_life is None or moment <= self.ref:
            return 1.0
        return float(0.5 ** ((moment - self.ref) / self.half_life))


@dataclass(slots=True)
class _Greedy:
    """A group of several coupled caps: the touches each of its (type, rule) pairs matched, in
    event time, granted as `scoring` does (`ScoreState._granted`)."""

    caps: dict[Cap, float]
    members: dict[str, list[tuple[EngagementRule, Cap, Cap]]]  # type -> its rules, file order
    #: (`touch_key`, type, positions in `members[type]` of the rules it matched) of every
    #: touch one of its rules matched, ascending (event time, then arrival)
    touches: list[tuple[int, str, tuple[int, ...]]] = field(default_factory=list)
    #: (type, position in `members[type]`) -> how many touches that rule matched
    counts: dict[tuple[str, int], int] = field(default_factory=dict)


def touch_key(at: datetime, seq: int) -> int:
    """One int ordered as (at, seq): microseconds since the epoch (exact: ages computed from
    them are `timedelta.total_seconds()` to the last bit) shifted past the arrival number."""
    return ((at - _EPOCH) // _MICROSECOND) << 32 | seq


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each positive (rule, type) pair's points go: `None` = uncapped, else a group."""

    where: dict[tuple[str, str], int | None]
    single: dict[int, float]  # group -> its one cap
    multi: dict[int, dict[Cap, float]]  # group -> its caps
    members: dict[int, dict[str, list[tuple[EngagementRule, Cap, Cap]]]]  # multi: type -> rules
    #: type -> (conditions, points, decays, slot, several-cap group or None, position in the
    #: group's `members[type]` or -1) per rule, file order
    by_type: dict[str, tuple[tuple[tuple[Condition, ...], float, bool, int, int | None, int], ...]]
    single_slots: tuple[tuple[int, float], ...]  # (slot, cap) of each one-cap group
    fit_rules: tuple[FitRule, ...]
    #: profile attribute -> the fit rules (positions in `fit_rules`) that read it
    fit_reads: dict[str, tuple[int, ...]]
    #: the running bound only falls between touches (no negative points decay toward zero):
    #: what `Gate` needs
    gated: bool = False

    @classmethod
    def of(cls, model: ScoringModel) -> Plan:
        type_caps = model.engagement.type_caps
        parent: dict[Cap, Cap] = {}

        def find(c: Cap) -> Cap:
            while parent.setdefault(c, c) != c:
                c = parent[c]
            return c

        bound: dict[tuple[str, str], list[Cap]] = {}
        for rule in model.engagement.rules:
            if rule.points <= 0:
                continue
            for t in rule.types:
                caps: list[Cap] = []
                if rule.cap is not None:
                    caps.append(("rule", rule.id))
                if t in type_caps:
                    caps.append(("type", t))
                for c in caps:
                    parent[find(c)] = find(caps[0])
                bound[(rule.id, t)] = caps
        values = {c: _cap_value(c, model) for c in parent}
        groups: dict[Cap, list[Cap]] = {}
        for c in parent:
            groups.setdefault(find(c), []).append(c)
        number = {root: n for n, root in enumerate(groups)}
        where = {pair: (number[find(caps[0])] if caps else None) for pair, caps in bound.items()}
        single = {number[r]: values[cs[0]] for r, cs in groups.items() if len(cs) == 1}
        multi = {number[r]: {c: values[c] for c in cs} for r, cs in groups.items() if len(cs) > 1}
        members: dict[int, dict[str, list[Member]]] = {}
        for rule in model.engagement.rules:  # file order, as `rules_for` gives them
            for t in rule.types:
                group = where.get((rule.id, t))
                if group in multi:
                    members.setdefault(group, {}).setdefault(t, []).append(
                        (rule, ("rule", rule.id), ("type", t))
                    )
        by_type: dict[
            str, list[tuple[tuple[Condition, ...], float, bool, int, int | None, int]]
        ] = {}
        placed: dict[tuple[int, str], int] = {}  # (group, type) -> members placed so far
        for rule in model.engagement.rules:
            for t in rule.types:
                group = where.get((rule.id, t))
                slot = 0 if rule.points <= 0 or group is None else group + 1
                several = group if group in multi and rule.points > 0 else None
                position = -1
                if several is not None:  # the same order as `members[several][t]`
                    position = placed[(several, t)] = placed.get((several, t), -1) + 1
                entry = (rule.when, rule.points, rule.decay, slot, several, position)
                by_type.setdefault(t, []).append(entry)
        reads: dict[str, list[int]] = {}
        for n, fit_rule in enumerate(model.fit.rules):
            for field_ in dict.fromkeys(c.field for c in fit_rule.when):
                reads.setdefault(field_, []).append(n)
        half_life = model.engagement.half_life_days
        rising = half_life is not None and any(
            r.points < 0 and r.decay for r in model.engagement.rules
        )
        return cls(
            where,
            single,
            multi,
            members,
            {t: tuple(entries) for t, entries in by_type.items()},
            tuple((g + 1, cap) for g, cap in single.items()),
            tuple(model.fit.rules),
            {f: tuple(rules) for f, rules in reads.items()},
            not rising,
        )


_PLANS: dict[int, tuple[ScoringModel, Plan]] = {}


def _plan(model: ScoringModel) -> Plan:
    """`Plan.of(model)`, once per model object (models are frozen)."""
    known = _PLANS.get(id(model))
    if known is None or known[0] is not model:
        if len(_PLANS) > 64:
            _PLANS.clear()
        known = _PLANS[id(model)] = (model, Plan.of(model))
    return known[1]


def _cap_value(cap: Cap, model: ScoringModel) -> float:
    kind, name = cap
    if kind == "type":
        return model.engagement.type_caps[name]
    rule = next(r for r in model.engagement.rules if r.id == name)
    assert rule.cap is not None
    return rule.cap


class ScoreState:
    """The running score of one lead under one scoring model (see the module docstring).

    `sums` slot 0 is the uncapped part; slot g + 1 is group g's positive points (a one-cap
    group's total is min(cap, slot); a several-cap group's slot bounds what it may grant)."""

    __slots__ = (
        "added",
        "attrs",
        "bounds",
        "fed",
        "fit",
        "gate",
        "greedy",
        "hits",
        "latest",
        "model",
        "multi",
        "newest",
        "plan",
        "profile",
        "sums",
    )

    def __init__(self, model: ScoringModel) -> None:
        self.model = model
        self.plan = _plan(model)
        groups = len(self.plan.single) + len(self.plan.multi)
        self.sums = Sums(1 + groups, model.engagement.half_life_days)
        self.multi = {g: _Greedy(caps, self.plan.members[g]) for g, caps in self.plan.multi.items()}
        self.fed = 0  # facts added so far (a prefix of the lead's facts, in arrival order)
        self.profile: list[Fact] = []
        #: the profile as `profile_of(self.profile)` gives it, and its newest fact's moment
        self.attrs: dict[str, Any] = {}
        self.newest: datetime | None = None
        self.fit = 0.0
        self.latest: datetime | None = None
        #: (slot, sum of caps) of each several-cap group: the most it may grant
        self.bounds = tuple((g + 1, sum(caps.values())) for g, caps in self.plan.multi.items())
        #: (slot, smallest cap, greedy) of each several-cap group
        self.greedy = tuple(
            (g + 1, min(caps.values()), self.multi[g]) for g, caps in self.plan.multi.items()
        )
        #: whether each fit rule matches `attrs` (None: no profile fact yet)
        self.hits: list[bool] | None = None
        #: the last bound check (`Gate`; None: none since the fit last changed), and the
        #: positive points (undecayed) the touches fed since then carry
        self.gate: Gate | None = None
        self.added = 0.0

    def feed(self, facts: Sequence[Fact]) -> None:
        """Add the facts not added yet (the lead's fact list only ever grows)."""
        fed = self.fed
        if fed == len(facts):
            return
        fit_read: set[str] = set()
        latest = self.latest
        for fact in facts[fed:]:
            if latest is None or fact.occurred_at > latest:
                latest = fact.occurred_at
            kind = fact.type
            if kind in PROFILE_TYPES:
                self.profile.append(fact)
                self._lay(fact, fit_read)
            elif kind.startswith("touch."):
                self._touch(fact)
        self.latest = latest
        self.fed = len(facts)
        if fit_read or (self.hits is None and self.profile):
            fit = self._fit(fit_read)
            if fit != self.fit:
                self.fit = fit
                self.gate = None  # the bound was for the fit it had

    def _lay(self, fact: Fact, read: set[str]) -> None:
        """Lay a profile fact over `attrs` as `profile_of` does (a late one: all laid again),
        adding to `read` the attributes a fit rule reads whose value may have changed."""
        newest, at = self.newest, fact.occurred_at
        if newest is not None and at < newest:  # not last in event time: lay them all again
            self.attrs = profile_of(self.profile)[0]
            read.update(self.plan.fit_reads)
            return
        self.newest = at  # a tie is laid after: it arrived later (`chronological`)
        attrs, fields = self.attrs, self.plan.fit_reads
        for key, value in profile_values(fact).items():
            if value is not None:
                # a condition reads a value's text and number, both fixed by its `_read`
                if key in fields and _read(attrs.get(key)) != _read(value):
                    read.add(key)
                attrs[key] = value

    def _fit(self, read: set[str]) -> float:
        """The fit of `attrs`, as `fit_points` sums it (the points of the rules that match,
        in file order, by `sum`), re-matching only the rules that read an attribute in `read`
        (all of them at the first profile fact)."""
        plan, attrs = self.plan, self.attrs
        hits = self.hits
        if hits is None:
            hits = self.hits = [rule.matches(attrs) for rule in plan.fit_rules]
        else:
            for n in {n for key in read for n in plan.fit_reads[key]}:
                hits[n] = plan.fit_rules[n].matches(attrs)
        points = [rule.points for rule, hit in zip(plan.fit_rules, hits, strict=True) if hit]
        return float(round(clamp(sum(points)), 2))

    def _touch(self, fact: Fact) -> None:
        entries = self.plan.by_type.get(fact.type)
        if not entries:
            return
        at = fact.occurred_at.timestamp()
        data = fact.data
        grouped: dict[int, list[int]] | None = None  # several-cap group -> rules matched
        add = self.sums.add
        for when, points, decays, slot, several, position in entries:
            if when and not all(c.matches(data) for c in when):
                continue
            add(slot, points, decays, at)
            if points > 0:
                self.added += points
            if several is not None:
                if grouped is None:
                    grouped = {}
                grouped.setdefault(several, []).append(position)
        if grouped:
            key, kind = touch_key(fact.occurred_at, fact.seq), fact.type
            for several, positions in grouped.items():
                group = self.multi[several]
                insort(group.touches, (key, kind, tuple(positions)))
                counts = group.counts
                for position in positions:
                    counts[(kind, position)] = counts.get((kind, position), 0) + 1

    def engagement(self, as_of: datetime, *, bound: bool = False, raw: bool = False) -> float:
        """Engagement as of `as_of`; with `bound`, an upper bound that skips the several-cap
        groups' greedy (each grants at most its points and at most the sum of its caps); with
        `raw`, before clamping and rounding (as-of reads check it is not near a rounding tie)."""
        factor = self.sums.factor(as_of.timestamp())
        decaying, flat = self.sums.decaying, self.sums.flat
        total = decaying[0] * factor + flat[0]
        for slot, cap in self.plan.single_slots:
            part = decaying[slot] * factor + flat[slot]
            total += cap if part > cap else part
        if bound:
            for slot, most in self.bounds:
                part = decaying[slot] * factor + flat[slot]
                total += most if part > most else part
        else:
            for slot, least, greedy in self.greedy:
                part = decaying[slot] * factor + flat[slot]
                # all its points fit under its smallest cap: the greedy would grant them all
                total += part if part <= least else self._granted(greedy, as_of)
        if raw:
            return total
        return round(0.0 if total < 0.0 else 100.0 if total > 100.0 else total, 2)

    def _granted(self, group: _Greedy, as_of: datetime) -> float:
        """`scoring._engagement_lines` restricted to one group's rules and caps: its touches
        newest first, each touch's rules in file order, every grant as `scoring` computes it.
        A (type, rule) pair is walked only while both its caps have room (a full one grants it
        nothing, and room only shrinks), so the walk ends when no pair has both room and
        touches left; the touches skipped would each have been granted 0."""
        room = dict(group.caps)
        half_life = self.model.engagement.half_life_days
        now = (as_of - _EPOCH) // _MICROSECOND
        members = group.members
        left = dict(group.counts)  # (type, position) -> its touches not walked yet
        live = {pair for pair, n in left.items() if n}
        self._drop_full(group, room, live)
        touches = group.touches
        i = len(touches)
        granted = 0.0
        while live:  # a live pair has a touch left: i > 0
            i -= 1
            key, kind, positions = touches[i]
            factor = 1.0
            if half_life is not None:
                # in whole microseconds / 10**6: `timedelta.total_seconds()` exactly
                age = max(0.0, (now - (key >> 32)) / 1_000_000 / DAY_SECONDS)
                factor = float(0.5 ** (age / half_life))
            rules = members[kind]
            for position in positions:
                pair = (kind, position)
                if pair not in live:
                    continue  # can grant no more
                left[pair] -= 1
                if not left[pair]:
                    live.discard(pair)
                rule, rkey, tkey = rules[position]
                raw = rule.points * (factor if rule.decay else 1.0)
                if raw > 0:
                    points = max(0.0, min(room.get(rkey, raw), room.get(tkey, raw), raw))
                    if rkey in room:
                        room[rkey] -= points
                    if tkey in room:
                        room[tkey] -= points
                    granted += points
            self._drop_full(group, room, live)
        return granted

    @staticmethod
    def _drop_full(group: _Greedy, room: dict[Cap, float], live: set[tuple[str, int]]) -> None:
        """Stop walking the pairs one of whose caps is full."""
        for kind, position in list(live):
            _rule, rkey, tkey = group.members[kind][position]
            if room.get(rkey, 1.0) <= 0 or room.get(tkey, 1.0) <= 0:
                live.discard((kind, position))

    def check(self, as_of: datetime, at: float) -> Gate:
        """A new `Gate` at `as_of` (`at`: its epoch seconds; not before the latest fact)."""
        raw = self.engagement(as_of, bound=True, raw=True)
        gate = self.gate = Gate(at, raw, self.fit, self.model.combine)
        self.added = 0.0
        return gate

    def settled(self, as_of: datetime) -> tuple[float, float, float] | None:
        """(fit, engagement, total) as of `as_of` exactly as `scoring.score` gives them, or
        None where the running sums cannot tell: `as_of` before the latest fact, or a raw
        engagement so near a tie of `round(x, 2)` that float rounding in another order could
        round it the other way. With no profile fact the fit is 0.0, as `score` sums no
        rule (every fit rule has a condition, and a condition on no value fails)."""
        if self.latest is not None and as_of < self.latest:
            return None
        raw = self.engagement(as_of, raw=True)
        if abs((raw * 100) % 1 - 0.5) < TIE:
            return None
        engagement = round(0.0 if raw < 0.0 else 100.0 if raw > 100.0 else raw, 2)
        combine = self.model.combine
        total = round(self.fit * combine.fit_weight + engagement * combine.engagement_weight, 2)
        return self.fit, engagement, total

    def totals(self, as_of: datetime, *, bound: bool = False) -> tuple[float, float, float]:
        """(fit, engagement, total) as of `as_of`, which must not be before the latest fact;
        with `bound`, engagement and total are upper bounds (see `engagement`)."""
        combine = self.model.combine
        engagement = self.engagement(as_of, bound=bound)
        total = round(self.fit * combine.fit_weight + engagement * combine.engagement_weight, 2)
        return self.fit, engagement, total


#: how near a tie of `round(x, 2)` (in hundredths) a running raw engagement must be for
#: `ScoreState.settled` to leave it to the full recomputation (float sums in another order
#: differ by far less)
TIE = 1e-4

#: what a `Gate` adds to its bound over `decide_mql`'s own check (`EPSILON`): that check rounds
#: its bound to 0.01 (0.005 at most either way) and its sums are added in another order, so a
#: rule the gate skips is one that check finds not met too
GATE_MARGIN = 0.02
INF = float("inf")


class Gate:
    """What a bound check (`decide_mql`) saw at moment `at`: the raw upper bound of the
    engagement (`base`, before clamping) and the fit. Until the fit changes (a profile fact:
    the state drops its gate), the bound at any later moment t, with the touches fed since
    adding `added` positive points, is at most `base + added`:

    - a decaying part holds positive points only (`Plan.gated`: no negative points decay,
      else no gate is used), and 2^(-(t - t_i) / half_life) only falls as t grows;
    - a flat part changes only with new touches: by their points, at most the positive ones;
    - a new touch adds its points decayed to t (a factor <= 1), or to a later reference;
    - min(cap, a + b) <= min(cap, a) + b for b >= 0 (the one-cap and several-cap bounds).

    `met` is monotone in fit, engagement and total (`>=` tests under all/any) and the
    weights are >= 0, so a rule not met at `base + added` (plus `GATE_MARGIN`) is not met by
    `decide_mql`'s bound check either: the decision is None at the same moments, without
    computing the engagement. `headroom` solves that test for `added` once per rule."""

    __slots__ = ("at", "base", "combine", "fit", "rooms")

    def __init__(self, at: float, base: float, fit: float, combine: Combine) -> None:
        self.at, self.base, self.fit, self.combine = at, base, fit, combine
        self.rooms: dict[int, tuple[MqlRule, float]] = {}

    def headroom(self, rule: MqlRule) -> float:
        """The `added` below which `rule` is not met at the bound (-inf: it may be now)."""
        known = self.rooms.get(id(rule))
        if known is not None and known[0] is rule:
            return known[1]
        fails: list[float] = []  # per threshold: it fails while added is below this
        if rule.fit_at_least is not None:
            fails.append(INF if self.fit < rule.fit_at_least else -INF)
        slack = EPSILON + GATE_MARGIN
        if rule.engagement_at_least is not None:
            fails.append(_below(rule.engagement_at_least - slack, self.base))
        if rule.total_at_least is not None:
            room = rule.total_at_least - slack - self.fit * self.combine.fit_weight
            weight = self.combine.engagement_weight
            if weight > 0:
                fails.append(_below(room / weight, self.base))
            else:
                fails.append(INF if room > 0 else -INF)
        most = max(fails) if rule.require == "all" else min(fails)
        self.rooms[id(rule)] = (rule, most)
        return most


def _below(limit: float, base: float) -> float:
    """The x for which clamp(base + x) < `limit` exactly when x is below it."""
    if limit <= 0.0:
        return -INF  # a clamped value is never below 0
    if limit > 100.0:
        return INF
    return limit - base


def _read(value: Any) -> Any:
    """What a condition reads of an attribute, as a key: a condition compares the value's text
    (`str`) and its number (`float`), both fixed by its type and text (800 and 800.0, or
    0.0 and -0.0, are equal but read otherwise; a list or dict has no number)."""
    return value if type(value) is str else (type(value), str(value))


def near(rule: MqlRule, fit: float, engagement: float, total: float) -> bool:
    """Whether any value is within `EPSILON` of its threshold (the running score may then
    decide otherwise than the full recomputation, so the decision re-scores)."""
    pairs = (
        (rule.total_at_least, total),
        (rule.fit_at_least, fit),
        (rule.engagement_at_least, engagement),
    )
    return any(t is not None and abs(v - t) < EPSILON for t, v in pairs)


def decide_mql(
    state: ScoreState,
    facts: Sequence[Fact],
    as_of: datetime,
    model: ScoringModel | None = None,
    *,
    exact: bool = True,
) -> Score | None:
    """The full score if the MQL rule is met as of `as_of` (the lead's latest moment), else
    None. Decided on the running score unless a value is near a threshold or `as_of` is before
    the lead's latest fact (then on the full recomputation); a met rule is always re-scored
    fully, so the decision records (and `lead explain` shows) exactly the full score.

    `model` (default: the state's own) decides with its MQL rule and is recorded in the score;
    its fit, engagement and combine must be the state's (`same_scoring`). Without `exact`, a
    rule met by the running score away from every threshold is not re-scored: the decision is
    the same, its recorded values the running ones (within 0.01; what-if reports none of them)."""
    state.feed(facts)
    model = state.model if model is None else model
    rule = model.mql
    if state.latest is None or as_of >= state.latest:
        at = as_of.timestamp()
        gate = state.gate
        if gate is not None and at >= gate.at and state.added < gate.headroom(rule):
            return None  # not met at the last check's bound plus what came since (`Gate`)
        if state.plan.gated:
            if state.check(as_of, at).headroom(rule) > 0.0:
                return None  # not met even at the upper bound now
        else:
            fit, most, total_most = state.totals(as_of, bound=True)
            if not rule.met(fit, most + EPSILON, total_most + EPSILON):
                return None  # not met even at the upper bound: no greedy needed
        values = state.totals(as_of)
        if not near(rule, *values):
            if not rule.met(*values):
                return None
            if not exact:
                fit, engagement, total = values
                return Score(model.ref, as_of, fit, engagement, total, ())
    full = score(facts, model, as_of, explain=False)  # the decision records totals
    return full if rule.met(full.fit, full.engagement, full.total) else None


def ruled_out(state: ScoreState, facts: Sequence[Fact], as_of: datetime, *rules: MqlRule) -> bool:
    """Whether `decide_mql(state, facts, as_of, model)` is None for a model with each of `rules`
    on its gate alone (`Gate`), without computing any engagement: the check `decide_mql`
    makes first, once for several rules on one running score (what-if's pair)."""
    state.feed(facts)
    gate = state.gate
    if gate is None or (state.latest is not None and as_of < state.latest):
        return False
    at = as_of.timestamp()
    if at < gate.at:
        return False
    added = state.added
    return all(added < gate.headroom(rule) for rule in rules)


def same_scoring(one: ScoringModel, other: ScoringModel) -> bool:
    """Whether two models score alike (fit, engagement, combine), whatever their MQL rule:
    one running score then serves both."""
    return (one.fit, one.engagement, one.combine) == (other.fit, other.engagement, other.combine)
