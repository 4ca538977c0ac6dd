"""Sales follow-up and engagement KPIs: acceptance, speed to lead, dials, reasons, email rates,
touchpoint clusters. Populations are stated per function; windows cut on when things happened."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from engine.analytics.funnel import within
from engine.analytics.journeys import Dataset, Journey
from engine.analytics.paths import Paths
from engine.analytics.stats import hours, pct, percentile, r2

CALL = "touch.call_logged"
REASONS = {"sales.rejected": "rejected", "sales.disqualified": "disqualified", "deal.lost": "lost"}


def _handed_over(
    ds: Dataset, start: datetime | None, end: datetime | None
) -> list[tuple[Journey, datetime]]:
    out = []
    for j in ds.journeys:
        mql = j.reached_at("mql")
        if within(mql, start, end):
            assert mql is not None
            out.append((j, mql))
    return out


def _first_owner_at(j: Journey, since: datetime) -> datetime | None:
    times = [t for t in j.routed if t >= since]
    times += [m.at for m in j.milestones if m.type == "owner.assigned" and m.at >= since]
    return min(times) if times else None


def sales_followup(
    ds: Dataset,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    first_touch_types: tuple[str, ...] = (CALL, "touch.meeting_booked", "touch.meeting_held"),
) -> dict[str, Any]:
    """For leads that became MQL in the window: how sales accepted them, how fast an owner first
    touched them (routing or assignment to first sales touch), and how many dials it took."""
    handed = _handed_over(ds, start, end)
    accepted = rejected = 0
    speed: list[float] = []
    waiting = 0
    for j, mql in handed:
        decision = next(
            (
                m
                for m in j.milestones
                if m.type in ("sales.accepted", "sales.rejected") and m.at >= mql
            ),
            None,
        )
        if decision is not None:
            accepted += decision.type == "sales.accepted"
            rejected += decision.type == "sales.rejected"
        owned = _first_owner_at(j, mql)
        if owned is None:
            continue
        touch = next((t for t in j.touches if t.type in first_touch_types and t.at >= owned), None)
        if touch is None:
            waiting += 1
        else:
            speed.append(hours(touch.at - owned))
    return {
        "mqls": len(handed),
        "accepted": accepted,
        "rejected": rejected,
        "acceptance_pct": pct(accepted, accepted + rejected),
        "owned": len(speed) + waiting,
        "touched": len(speed),
        "not_yet_touched": waiting,
        "speed_to_lead_median_hours": r2(percentile(speed, 0.5)),
        "speed_to_lead_p90_hours": r2(percentile(speed, 0.9)),
        "speed_to_lead_average_hours": r2(sum(speed) / len(speed)) if speed else None,
    }


def dials(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Calls logged before a lead reached an outcome (SQL: "dials to lead"; disqualified:
    "dials to disqualification"), for leads reaching it in the window."""
    out = []
    for outcome in ("sql", "disqualified"):
        per_lead: list[int] = []
        for j in ds.journeys:
            at = j.reached_at(outcome)
            if at is not None and within(at, start, end):
                per_lead.append(sum(1 for t in j.touches if t.type == CALL and t.at <= at))
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


def reasons(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Rejections, disqualifications and lost deals by the reason sales gave."""
    counts: Counter[tuple[str, str]] = Counter()
    for j in ds.journeys:
        for m in j.milestones:
            if m.type in REASONS and within(m.at, start, end):
                counts[(REASONS[m.type], m.reason or "(no reason given)")] += 1
    return [
        {"outcome": o, "reason": r, "leads": n}
        for (o, r), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
    ]


EMAIL = {
    "touch.email_sent": "sent",
    "touch.email_opened": "opened",
    "touch.email_clicked": "clicked",
    "touch.email_bounced": "bounced",
    "touch.unsubscribed": "unsubscribed",
}


def email(
    ds: Dataset, start: datetime | None = None, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Email events per campaign in the window, and rates over delivered (sent - bounced)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for j in ds.journeys:
        for t in j.touches:
            if t.type in EMAIL and within(t.at, start, end):
                counts[t.campaign or "(none)"][EMAIL[t.type]] += 1
    out = []
    for campaign, c in sorted(counts.items()):
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


def clusters(paths: Paths, *, steps: int = 4, top: int = 10) -> list[dict[str, Any]]:
    """The most common sequences of touch types before conversion: the last `steps` touch
    types of each converting path, repeats in a row collapsed (three page views = one step)."""
    counts: Counter[str] = Counter()
    for p in paths.converting:
        seq: list[str] = []
        for t in p.touches:
            name = t.type.removeprefix("touch.")
            if not seq or seq[-1] != name:
                seq.append(name)
        counts[" > ".join(seq[-steps:]) or "(no touchpoint)"] += 1
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"sequence": s, "conversions": n, "share_pct": pct(n, total)} for s, n in ranked]
