"""Every KPI section of `report kpis` over people fed one at a time, in the order a Dataset
lists them: a journey (`KpiTally.add`) or its columns (`add_lead`: `kpilead.KpiLead`, as
`kpiread` streams them from the read model, no object per touch). The same document as
`report.kpis` over a Dataset, holding per-group counts and sums plus one number per lead where
a section needs a median or a p90 (a duration, a dial count), never the journeys.

Each section's per-lead step repeats the in-memory function's (engine/analytics/funnel.py,
followup.py, money.py), which stay the reference: tests/property/test_streamed_kpis.py proves
the two equal on random journeys. Float sums are added in journey order, as the reference's
`sum(list)` does, so averages agree to the last bit.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.analytics import money
from engine.analytics.attribution import Credits, Tally
from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.followup import CALL, EMAIL, REASONS
from engine.analytics.funnel import period_start, within
from engine.analytics.journeys import FUNNEL_STAGES, Cost, Journey
from engine.analytics.kpilead import KpiLead, first_reached, kpi_lead, touchpoint
from engine.analytics.paths import Path, PathStream, deals_value
from engine.analytics.stats import days, hours, pct, percentile, r2
from engine.domain.currency import NO_CURRENCY
from engine.domain.lifecycle import STAGES
from engine.domain.rules import Rules

EXIT_STAGES = tuple(s for s in STAGES if s not in FUNNEL_STAGES and s != "anonymous")
CAPTURED = "lead.captured"
WON = "deal.won"
_REASON_TYPES = frozenset(REASONS)
DEFAULT_FIRST_TOUCH = (CALL, "touch.meeting_booked", "touch.meeting_held")


def _floats() -> array[float]:
    return array("d")


def _in(at: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or at >= start) and (end is None or at < end)


def _window(
    ats: Sequence[datetime], start: datetime | None, end: datetime | None
) -> tuple[int, int]:
    """The bounds of the indexes of the (sorted) times in [start, end)."""
    lo = 0 if start is None else bisect_left(ats, start)
    hi = len(ats) if end is None else bisect_left(ats, end)
    return lo, max(lo, hi)


def _won(x: KpiLead) -> list[tuple[Decimal | None, str | None, datetime]]:
    """The won deals (amount, currency, when), in the milestones' order (`Journey.won`)."""
    if WON not in x.milestone_type:
        return []
    columns = (x.milestone_at, x.milestone_type, x.milestone_amount, x.milestone_currency)
    return [
        (amount, currency, at)
        for at, type_, amount, currency in zip(*columns, strict=True)
        if type_ == WON
    ]


def _path(ats: Sequence[datetime], at: datetime, lookback: timedelta | None) -> tuple[int, int]:
    """The indexes of the (sorted) times a path converting at `at` holds (`paths._cut`)."""
    lo = 0 if lookback is None else bisect_left(ats, at - lookback)
    return lo, bisect_right(ats, at)


class KpiTally:
    """`report.kpis` by parts: `add` each journey, then `document()`."""

    def __init__(
        self,
        rules: Rules,
        start: datetime | None,
        end: datetime | None,
        *,
        costs: Iterable[Cost],
        currency: str,
        model: str,
        period: str = "month",
        by: str = "channel",
    ) -> None:
        self.start, self.end, self.period, self.by = start, end, period, by
        self.everything = start is None and end is None  # no window: every moment is in it
        cfg = rules.attribution
        self.first_touch = (
            rules.sla.first_touch_types if rules.sla else None
        ) or DEFAULT_FIRST_TOUCH
        self.leads = 0
        # funnel, exits, cycle (the cohort: leads created in the window)
        self.reached: Counter[str] = Counter()
        self.stays: dict[str, array[float]] = defaultdict(_floats)
        self.sitting: dict[str, list[datetime]] = defaultdict(list)
        self.moment: datetime | None = None
        self.cycles = _floats()
        # sources (cohort, per source group), flow (every lead)
        self.source_reached: dict[str, Counter[str]] = {}
        self.source_cycles: dict[str, array[float]] = {}
        self.flow: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(FUNNEL_STAGES, 0)
        )
        # followup, dials, reasons, email
        self.mqls = self.accepted = self.rejected = self.waiting = 0
        self.speed = _floats()
        self.dials: dict[str, array[int]] = {o: array("q") for o in ("sql", "disqualified")}
        self.reasons: Counter[tuple[str, str]] = Counter()
        self.email: dict[str, Counter[str]] = defaultdict(Counter)
        #: False: the e-mail counts come from `add_email` (a sum over touches, in SQL)
        self.count_email = True
        # clusters (conversion paths), money (attributed revenue: one model by `by`)
        self.conversion_paths = PathStream(cfg, start=start, end=end)
        self.excluded = frozenset(cfg.exclude_types)
        self.sequences: Counter[str] = Counter()
        self.currency = currency
        self.revenue_paths = PathStream(
            cfg, conversion="customer", value="revenue", start=start, end=end,
            currency=currency, rates=rules.money.rates,
        )  # fmt: skip
        self.model = model
        self.credits = Tally(
            (model,), (by,), cfg, conversion=self.revenue_paths.stage, value="revenue",
            currency=currency,
        )  # fmt: skip
        self.credits.left_out = self.revenue_paths.left_out
        self.exchange = Exchange(currency or NO_CURRENCY, rules.money.rates)
        self.money_left_out = LeftOut()
        self.cost = money.costs_by(costs, start, end, by, self.exchange, self.money_left_out)
        self.counts: dict[str, dict[str, int]] = defaultdict(
            lambda: dict.fromkeys(money.COUNTED, 0)
        )
        self.revenue: dict[str, Decimal] = defaultdict(Decimal)

    def add(self, j: Journey) -> None:
        self.add_lead(kpi_lead(j, self.by, self.first_touch))

    def add_lead(self, x: KpiLead) -> None:
        """One person's columns (`kpi_lead`, or `kpiread` straight from the read model)."""
        s, e = self.start, self.end
        self.leads += 1
        at_stage = first_reached(x.move_at, x.move_to)
        group = x.source
        if x.latest is not None and (self.moment is None or x.latest > self.moment):
            self.moment = x.latest
        if within(at_stage.get("lead"), s, e):
            self._cohort(x, at_stage, group)
        for stage in FUNNEL_STAGES:
            at = at_stage.get(stage)
            if at is not None and (self.everything or _in(at, s, e)):
                self.flow[(period_start(at, self.period), group)][stage] += 1
        self._followup(x, at_stage)
        for outcome, per_lead in self.dials.items():
            at = at_stage.get(outcome)
            if at is not None and within(at, s, e):
                per_lead.append(bisect_right(x.call_at, at))
        if not _REASON_TYPES.isdisjoint(x.milestone_type):
            for at, type_, reason in zip(
                x.milestone_at, x.milestone_type, x.milestone_reason, strict=True
            ):
                if type_ in REASONS and within(at, s, e):
                    self.reasons[(REASONS[type_], reason or "(no reason given)")] += 1
        if self.count_email and x.touches:
            lo, hi = _window(x.touch_at, s, e)
            for campaign, type_ in zip(x.email_campaign[lo:hi], x.touch_type[lo:hi], strict=True):
                if campaign is not None:
                    self.email[campaign][EMAIL[type_]] += 1
        self._cluster(x, at_stage)
        self._money(x, at_stage, group)
        self._revenue_path(x, at_stage)

    def add_email(self, campaign: str, type_: str, touches: int) -> None:
        """`touches` e-mail touches of `type_` (EMAIL) in the window, of `campaign`'s key."""
        self.email[campaign][EMAIL[type_]] += touches

    def _cluster(self, x: KpiLead, at_stage: dict[str, datetime]) -> None:
        """The converting path's touch types (`followup.clusters`), cut as `paths._cut`."""
        paths = self.conversion_paths
        at = at_stage.get(paths.stage)
        if at is None or not _in(at, paths.start, paths.end):
            return
        seq: list[str] = []
        for type_ in x.touch_type[slice(*_path(x.touch_at, at, paths.lookback))]:
            if type_ in self.excluded:
                continue
            name = type_.removeprefix("touch.")
            if not seq or seq[-1] != name:
                seq.append(name)
        self.sequences[" > ".join(seq[-4:]) or "(no touchpoint)"] += 1

    def _revenue_path(self, x: KpiLead, at_stage: dict[str, datetime]) -> None:
        """The customer path worth the won deals into `credits` (`PathStream.path`)."""
        paths, tally, by, excluded = self.revenue_paths, self.credits, self.by, self.excluded
        at = at_stage.get(paths.stage)
        if at is None or (paths.end is not None and at >= paths.end):
            if tally.chains or tally.shapley:  # only Markov and Shapley read these
                lo, hi = _window(x.touch_at, paths.start, paths.end)
                keys = tuple(
                    k
                    for k, t in zip(x.touch_key[lo:hi], x.touch_type[lo:hi], strict=True)
                    if t not in excluded
                )
                if keys:
                    tally.add_unconverted({by: keys})
            return
        if paths.start is not None and at < paths.start:
            return
        lo, hi = _path(x.touch_at, at, paths.lookback)
        touches = tuple(
            touchpoint(x.touch_at[i], x.touch_key[i], by)
            for i in range(lo, hi)
            if x.touch_type[i] not in excluded
        )
        worth = deals_value(_won(x), paths.exchange, paths.left_out)
        captured = next(
            (w for w, t in zip(x.milestone_at, x.milestone_type, strict=True) if t == CAPTURED),
            None,
        )
        opportunity = at_stage.get("opportunity")
        tally.add(
            Path(
                x.key,
                touches,
                at,
                worth,
                lead_created_at=captured if captured is not None else at_stage.get("lead"),
                opportunity_at=opportunity if opportunity and opportunity <= at else None,
                closes=paths.stage == "customer",
            )
        )

    def _cohort(self, x: KpiLead, at_stage: dict[str, datetime], group: str) -> None:
        if group not in self.source_reached:
            self.source_reached[group] = Counter(dict.fromkeys(FUNNEL_STAGES, 0))
            self.source_cycles[group] = _floats()
        counts = self.source_reached[group]
        for stage in FUNNEL_STAGES:
            if stage in at_stage:
                self.reached[stage] += 1
                counts[stage] += 1
        ats, tos = x.move_at, x.move_to
        stays = self.stays
        for i in range(len(ats) - 1):  # `days`, inline: a stay per move of every lead
            stays[tos[i]].append((ats[i + 1] - ats[i]).total_seconds() / 86400.0)
        if tos and tos[-1] in EXIT_STAGES:
            self.sitting[tos[-1]].append(ats[-1])
        created, won = at_stage.get("lead"), at_stage.get("customer")
        cycle = days(won - created) if created is not None and won is not None else None
        if cycle is not None:
            self.cycles.append(cycle)
            self.source_cycles[group].append(cycle)

    def _followup(self, x: KpiLead, at_stage: dict[str, datetime]) -> None:
        mql = at_stage.get("mql")
        if mql is None or not within(mql, self.start, self.end):
            return
        self.mqls += 1
        decision = next(
            (
                t
                for at, t in zip(x.milestone_at, x.milestone_type, strict=True)
                if t in ("sales.accepted", "sales.rejected") and at >= mql
            ),
            None,
        )
        if decision is not None:
            self.accepted += decision == "sales.accepted"
            self.rejected += decision == "sales.rejected"
        times = [t for t in x.routed if t >= mql]
        times += [
            at
            for at, t in zip(x.milestone_at, x.milestone_type, strict=True)
            if t == "owner.assigned" and at >= mql
        ]
        if not times:
            return
        owned = min(times)
        sales = x.sales_at
        first = bisect_left(sales, owned)
        if first == len(sales):
            self.waiting += 1
        else:
            self.speed.append(hours(sales[first] - owned))

    def _money(self, x: KpiLead, at_stage: dict[str, datetime], group: str) -> None:
        for stage in money.COUNTED:
            at = at_stage.get(stage)
            if at is not None and (self.everything or _in(at, self.start, self.end)):
                self.counts[group][stage] += 1
        for amount_or_none, currency, at in _won(x):
            if not within(at, self.start, self.end):
                continue
            amount, cur = amount_or_none or Decimal(0), currency or NO_CURRENCY
            deal = self.exchange.deal(amount, cur, at)
            if deal is None:
                self.money_left_out.add("revenue", cur, amount)
            else:
                self.revenue[group] += deal

    def sections(self) -> dict[str, Any]:
        """The KPI sections, as `report.kpis` names them."""
        (credits,) = self.credits.results(self.by)
        return {
            "leads": self.leads,
            "funnel": self._funnel(),
            "sources": self._sources(),
            "exits": self._exits(),
            "cycle": [self._cycle()],
            "flow": [
                {self.period: p, f"source_{self.by}": g, **c}
                for (p, g), c in sorted(self.flow.items())
            ],
            "followup": [self._followup_row()],
            "dials": self._dials(),
            "reasons": [
                {"outcome": o, "reason": r, "leads": n}
                for (o, r), n in sorted(
                    self.reasons.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1])
                )
            ],
            "email": self._email(),
            "clusters": self._clusters(),
            "money": money.table(
                self.by, self.cost, self.counts, self.revenue, credits, self.currency
            ),
            "money_model": self.model,
            "currency": self.currency,
            "money_left_out": [
                *self.money_left_out.rows(),
                *({**r, "what": "attributed_revenue"} for r in credits.left_out),
            ],
        }

    def attributed(self) -> Credits:
        (credits,) = self.credits.results(self.by)
        return credits

    def _funnel(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        previous: int | None = None
        for stage in FUNNEL_STAGES:
            reached = self.reached[stage]
            durations = self.stays.get(stage, _floats())
            out.append(
                {
                    "stage": stage,
                    "reached": reached,
                    "conversion_pct": pct(reached, previous) if previous is not None else None,
                    "stays": len(durations),
                    "median_days": r2(percentile(durations, 0.5)),
                    "p90_days": r2(percentile(durations, 0.9)),
                }
            )
            previous = reached
        return out

    def _exits(self) -> list[dict[str, Any]]:
        until = self.moment
        out = []
        for s in EXIT_STAGES:
            stays = self.stays.get(s, _floats())
            sitting = (
                [days(max(until - at, timedelta(0))) for at in self.sitting.get(s, [])]
                if until is not None
                else []
            )
            out.append(
                {
                    "stage": s,
                    "stays": len(stays),
                    "median_days": r2(percentile(stays, 0.5)),
                    "p90_days": r2(percentile(stays, 0.9)),
                    "open": len(sitting),
                    "open_median_days": r2(percentile(sitting, 0.5)),
                }
            )
        return out

    def _cycle(self) -> dict[str, Any]:
        lengths = self.cycles
        return {
            "customers": len(lengths),
            "average_days": r2(sum(lengths) / len(lengths)) if lengths else None,
            "median_days": r2(percentile(lengths, 0.5)),
            "shortest_days": r2(min(lengths)) if lengths else None,
            "longest_days": r2(max(lengths)) if lengths else None,
        }

    def _sources(self) -> list[dict[str, Any]]:
        out = []
        for group, reached in sorted(self.source_reached.items()):
            cycles = self.source_cycles[group]
            out.append(
                {
                    f"source_{self.by}": group,
                    **{s: reached[s] for s in FUNNEL_STAGES},
                    "lead_to_customer_pct": pct(reached["customer"], reached["lead"]),
                    "cycle_average_days": r2(sum(cycles) / len(cycles)) if cycles else None,
                }
            )
        return out

    def _followup_row(self) -> dict[str, Any]:
        speed = self.speed
        return {
            "mqls": self.mqls,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "acceptance_pct": pct(self.accepted, self.accepted + self.rejected),
            "owned": len(speed) + self.waiting,
            "touched": len(speed),
            "not_yet_touched": self.waiting,
            "speed_to_lead_median_hours": r2(percentile(speed, 0.5)),
            "speed_to_lead_p90_hours": r2(percentile(speed, 0.9)),
            "speed_to_lead_average_hours": r2(sum(speed) / len(speed)) if speed else None,
        }

    def _dials(self) -> list[dict[str, Any]]:
        out = []
        for outcome, per_lead in self.dials.items():
            out.append(
                {
                    "outcome": outcome,
                    "leads": len(per_lead),
                    "dials": sum(per_lead),
                    "dials_per_lead": r2(sum(per_lead) / len(per_lead)) if per_lead else None,
                    "median_dials": r2(percentile(per_lead, 0.5)),
                    "leads_without_a_dial": sum(1 for n in per_lead if n == 0),
                }
            )
        return out

    def _email(self) -> list[dict[str, Any]]:
        out = []
        for campaign, c in sorted(self.email.items()):
            delivered = c["sent"] - c["bounced"]
            out.append(
                {
                    "campaign": campaign,
                    **{k: c[k] for k in EMAIL.values()},
                    "delivered": delivered,
                    "open_rate_pct": pct(c["opened"], delivered),
                    "click_rate_pct": pct(c["clicked"], delivered),
                    "click_to_open_pct": pct(c["clicked"], c["opened"]),
                    "bounce_rate_pct": pct(c["bounced"], c["sent"]),
                    "unsubscribe_rate_pct": pct(c["unsubscribed"], delivered),
                }
            )
        return out

    def _clusters(self, top: int = 10) -> list[dict[str, Any]]:
        counts = self.sequences
        total = sum(counts.values())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [{"sequence": s, "conversions": n, "share_pct": pct(n, total)} for s, n in ranked]
