"""Every KPI section of `report kpis` over journeys fed one at a time (`KpiTally.add`), in the
order a Dataset lists them: the same document as `report.kpis` over a Dataset, holding per-group
counts and sums plus one number per lead where a section needs a median or a p90 (a duration, a
dial count), never the journeys.

Each section's per-lead step repeats the in-memory function's (engine/analytics/funnel.py,
followup.py, money.py), which stay the reference: tests/property/test_streamed_kpis.py proves
the two equal on random journeys. Float sums are added in journey order, as the reference's
`sum(list)` does, so averages agree to the last bit.
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.analytics import money
from engine.analytics.attribution import Credits, Tally
from engine.analytics.exchange import Exchange, LeftOut
from engine.analytics.followup import CALL, EMAIL, REASONS
from engine.analytics.funnel import period_start, source_of, within
from engine.analytics.journeys import FUNNEL_STAGES, Cost, Journey
from engine.analytics.paths import PathStream
from engine.analytics.stats import days, hours, pct, percentile, r2
from engine.domain.currency import NO_CURRENCY
from engine.domain.lifecycle import STAGES
from engine.domain.rules import Rules

EXIT_STAGES = tuple(s for s in STAGES if s not in FUNNEL_STAGES and s != "anonymous")
#: every stage some section asks `reached_at` for, computed once per journey
_ASKED = (*FUNNEL_STAGES, "disqualified")
DEFAULT_FIRST_TOUCH = (CALL, "touch.meeting_booked", "touch.meeting_held")


def _floats() -> array[float]:
    return array("d")


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
        # clusters (conversion paths), money (attributed revenue: one model by `by`)
        self.conversion_paths = PathStream(cfg, start=start, end=end)
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
        s, e, by = self.start, self.end, self.by
        self.leads += 1
        reached = {stage: j.reached_at(stage) for stage in _ASKED}
        group = source_of(j, by)
        for last in (
            *(t.at for t in j.touches[-1:]),
            *(m.at for m in j.moves[-1:]),
            *(m.at for m in j.milestones[-1:]),
            *j.routed[-1:],
        ):
            if self.moment is None or last > self.moment:
                self.moment = last
        if within(reached["lead"], s, e):
            self._cohort(j, reached, group)
        for stage in FUNNEL_STAGES:
            at = reached[stage]
            if within(at, s, e):
                assert at is not None
                self.flow[(period_start(at, self.period), group)][stage] += 1
        self._followup(j, reached)
        for outcome, per_lead in self.dials.items():
            at = reached[outcome]
            if at is not None and within(at, s, e):
                per_lead.append(sum(1 for t in j.touches if t.type == CALL and t.at <= at))
        for m in j.milestones:
            if m.type in REASONS and within(m.at, s, e):
                self.reasons[(REASONS[m.type], m.reason or "(no reason given)")] += 1
        for t in j.touches:
            if t.type in EMAIL and within(t.at, s, e):
                self.email[t.campaign or "(none)"][EMAIL[t.type]] += 1
        path = self.conversion_paths.path(j)
        if path is not None and path.converted_at is not None:
            seq: list[str] = []
            for t in path.touches:
                name = t.type.removeprefix("touch.")
                if not seq or seq[-1] != name:
                    seq.append(name)
            self.sequences[" > ".join(seq[-4:]) or "(no touchpoint)"] += 1
        self._money(j, reached, group)
        path = self.revenue_paths.path(j)
        if path is not None:
            self.credits.add(path)

    def _cohort(self, j: Journey, reached: dict[str, datetime | None], group: str) -> None:
        for stage in FUNNEL_STAGES:
            self.reached[stage] += reached[stage] is not None
        for move, after in zip(j.moves, j.moves[1:], strict=False):
            self.stays[move.to_stage].append(days(after.at - move.at))
        if j.moves and j.moves[-1].to_stage in EXIT_STAGES:
            self.sitting[j.moves[-1].to_stage].append(j.moves[-1].at)
        created, won = reached["lead"], reached["customer"]
        cycle = days(won - created) if created is not None and won is not None else None
        if cycle is not None:
            self.cycles.append(cycle)
        if group not in self.source_reached:
            self.source_reached[group] = Counter(dict.fromkeys(FUNNEL_STAGES, 0))
            self.source_cycles[group] = _floats()
        counts = self.source_reached[group]
        for stage in FUNNEL_STAGES:
            counts[stage] += reached[stage] is not None
        if cycle is not None:
            self.source_cycles[group].append(cycle)

    def _followup(self, j: Journey, reached: dict[str, datetime | None]) -> None:
        mql = reached["mql"]
        if not within(mql, self.start, self.end):
            return
        assert mql is not None
        self.mqls += 1
        decision = next(
            (
                m
                for m in j.milestones
                if m.type in ("sales.accepted", "sales.rejected") and m.at >= mql
            ),
            None,
        )
        if decision is not None:
            self.accepted += decision.type == "sales.accepted"
            self.rejected += decision.type == "sales.rejected"
        times = [t for t in j.routed if t >= mql]
        times += [m.at for m in j.milestones if m.type == "owner.assigned" and m.at >= mql]
        if not times:
            return
        owned = min(times)
        touch = next((t for t in j.touches if t.type in self.first_touch and t.at >= owned), None)
        if touch is None:
            self.waiting += 1
        else:
            self.speed.append(hours(touch.at - owned))

    def _money(self, j: Journey, reached: dict[str, datetime | None], group: str) -> None:
        for stage in money.COUNTED:
            if within(reached[stage], self.start, self.end):
                self.counts[group][stage] += 1
        for m in j.won():
            if not within(m.at, self.start, self.end):
                continue
            amount, cur = m.amount or Decimal(0), m.currency or NO_CURRENCY
            deal = self.exchange.deal(amount, cur, m.at)
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
