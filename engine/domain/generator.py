"""Realistic lead journeys as CloudEvents, deterministic for a seed (part of the product).

Personas differ in fit and appetite; journeys start on a channel and campaign, browse, get
captured, get enriched, engage (email, pages, pricing, downloads, webinars), and some reach sales:
calls, acceptance or rejection, meetings, qualification, opportunities, wins with amounts and
losses. Campaign costs are recorded monthly. A few deliveries are duplicated or out of order, as
they are in real pipelines.

Sales keeps the shipped rules' SLA most of the time: each journey is scored as it is built (the
engine's own `Lead`, under the shipped default rules), and when the lead becomes MQL (the moment
the engine routes it) a rep follows up: the first touch and the decision (accept or reject) fall
mostly well inside the SLA's business hours, some late in the allowance, a few past it.
"""

from __future__ import annotations

import json
import random
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from engine.aggregates.lead import Lead
from engine.domain.contract import EVENT_TYPES
from engine.domain.rules import Rules, Sla, load_rules
from engine.domain.sla import add_business_hours

#: the id of the scratch leads that score a journey while it is made (never stored)
_SCRATCH_ID = uuid.UUID(int=0)

BASE = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
SOURCE = "urn:leadengine:demo"


@dataclass(frozen=True)
class Persona:
    name: str
    weight: float
    industries: tuple[str, ...]
    employees: tuple[int, int]
    seniority: tuple[str, ...]
    countries: tuple[str, ...]
    appetite: float  # how much they engage, 0-1
    sales_ready: float  # chance sales ever talks to them
    domain: str | None = None


PERSONAS = (
    Persona(
        "enterprise-champion",
        0.2,
        ("software", "saas", "fintech"),
        (500, 8000),
        ("director", "vp", "c-level"),
        ("US", "GB", "DE"),
        0.85,
        0.7,
    ),
    Persona(
        "midmarket-buyer",
        0.3,
        ("internet", "financial services", "healthcare", "software"),
        (100, 1500),
        ("manager", "director"),
        ("US", "CA", "NL", "FR", "SE"),
        0.65,
        0.45,
    ),
    Persona(
        "smb-user",
        0.32,
        ("retail", "education", "manufacturing", "software"),
        (3, 150),
        ("individual", "manager"),
        ("US", "BR", "IN", "AU", "ES"),
        0.45,
        0.15,
    ),
    Persona(
        "student",
        0.12,
        ("education",),
        (1, 5),
        ("student",),
        ("US", "IN", "GB"),
        0.35,
        0.0,
        "uni.edu",
    ),
    Persona(
        "competitor",
        0.06,
        ("software",),
        (50, 400),
        ("manager",),
        ("US",),
        0.3,
        0.0,
        "rivalcrm.com",
    ),
)

CAMPAIGNS: dict[str, tuple[str, ...]] = {
    "paid_search": ("brand-search", "generic-search"),
    "paid_social": ("linkedin-abm", "meta-retargeting"),
    "organic_search": ("seo",),
    "email": ("newsletter", "nurture-series"),
    "events": ("saas-summit",),
    "webinar": ("q1-webinar", "q2-webinar"),
    "referral": ("partner-referral",),
}
#: Every channel a generated touch or cost carries: the campaigns' channels, `direct` (pages
#: visited straight) and `sales` (calls and meetings). docs/read-model.md lists them.
CHANNELS = (*CAMPAIGNS, "direct", "sales")
MONTHLY_COST = {
    "brand-search": 4000,
    "generic-search": 9000,
    "linkedin-abm": 12000,
    "meta-retargeting": 5000,
    "seo": 2500,
    "newsletter": 800,
    "nurture-series": 1200,
    "saas-summit": 15000,
    "q1-webinar": 3000,
    "q2-webinar": 3000,
    "partner-referral": 2000,
}
FIRST = (
    "Ana",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Fatima",
    "Goran",
    "Hana",
    "Ivan",
    "Julia",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
)
LAST = (
    "Silva",
    "Novak",
    "Okafor",
    "Schmidt",
    "Tanaka",
    "Dubois",
    "Kowalski",
    "Haddad",
    "Larsen",
    "Moreau",
    "Patel",
    "Rossi",
    "Berg",
    "Ng",
    "Costa",
)
COMPANY = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
    "Gringotts",
    "Aperture",
    "Monarch",
)
REPS = ("ana.ramos", "bo.lindqvist", "chidi.eze", "dee.walsh")
PAGES = (
    "/",
    "/product",
    "/features",
    "/customers",
    "/blog/lead-scoring",
    "/blog/attribution",
    "/integrations",
    "/about",
)
CONTENT = ("ebook-lead-scoring", "roi-calculator", "state-of-revops-2026", "case-study-globex")
REJECT = ("no budget", "wrong contact", "timing", "not a fit")
DISQUALIFY = ("no budget", "competitor", "student", "duplicate company")
LOSS = ("price", "chose competitor", "no decision")


@cache
def shipped_rules() -> Rules:
    """The rules the journeys are scored under (the shipped default)."""
    return load_rules()


def shipped_sla() -> Sla:
    sla = shipped_rules().sla
    return sla if sla is not None else Sla()


class Journey:
    """Builds one lead's events; `emit` keeps them with a strictly increasing clock.

    With `score`, the lead's own events are also recorded on an in-memory `Lead` under the
    shipped rules, so `mql_at` says when the engine will have made the lead MQL (and routed it).
    """

    def __init__(
        self, rng: random.Random, key: str, start: datetime, *, score: bool = False
    ) -> None:
        self.rng = rng
        self.key = key
        self.t = start
        self.events: list[dict[str, Any]] = []
        self.lead = Lead.start(key, _SCRATCH_ID) if score else None
        self.mql_at: datetime | None = None

    def wait(self, hours: float) -> None:
        self.t += timedelta(seconds=max(1, int(self.rng.expovariate(1 / hours) * 3600)))

    def at(self, moment: datetime) -> None:
        """Move the clock to `moment` (never backwards: the clock only increases)."""
        self.t = max(self.t + timedelta(seconds=1), moment)

    def _score(self, type_: str, data: dict[str, Any]) -> None:
        """Record one of the lead's own events, until its first MQL (all the journey needs)."""
        if self.lead is None or self.mql_at is not None:
            return
        clean = EVENT_TYPES[type_].model_validate(data).model_dump(mode="json", exclude_none=True)
        before = self.lead.mql_rounds
        self.lead.record(
            event_id=str(len(self.events)),
            event_type=type_,
            source=SOURCE,
            occurred_at=self.t,
            data=clean,
            rules=shipped_rules(),
        )
        self.lead.collect_events()  # in memory only: nothing is saved
        if self.lead.mql_rounds > before:
            self.mql_at = self.t

    def emit(self, type_: str, data: dict[str, Any], subject: str | None = None) -> None:
        event: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "source": SOURCE,
            "type": type_,
            "subject": subject or self.key,
            "time": self.t.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": data,
        }
        self.events.append(event)
        if event["subject"] == self.key:
            self._score(type_, data)

    def touch(self, type_: str, channel: str, campaign: str | None, **extra: Any) -> None:
        data = {"channel": channel, **({"campaign": campaign} if campaign else {}), **extra}
        self.emit(type_, data)


def _pick_persona(rng: random.Random) -> Persona:
    return rng.choices(PERSONAS, weights=[p.weight for p in PERSONAS])[0]


def _identity(rng: random.Random, persona: Persona, n: int) -> dict[str, Any]:
    first, last, company = rng.choice(FIRST), rng.choice(LAST), rng.choice(COMPANY)
    domain = persona.domain or f"{company.lower()}{rng.randint(1, 99)}.example"
    return {
        "email": f"{first.lower()}.{last.lower()}{n}@{domain}",
        "name": f"{first} {last}",
        "phone": f"+1-555-{rng.randint(1000, 9999)}",
        "company": company if persona.domain is None else None,
        "title": rng.choice(
            ("Head of Growth", "RevOps Manager", "CMO", "Marketing Analyst", "VP Sales", "Student")
        ),
        "country": rng.choice(persona.countries),
    }


def _engage(j: Journey, persona: Persona, channel: str, campaign: str | None) -> None:
    rng = j.rng
    for _ in range(rng.randint(1, 3 + int(10 * persona.appetite))):
        if j.mql_at is not None:
            return  # qualified: sales takes over
        j.wait(60)
        roll = rng.random()
        if roll < 0.35:
            mail_campaign = rng.choice(CAMPAIGNS["email"])
            j.touch("touch.email_sent", "email", mail_campaign, content="newsletter-issue")
            if rng.random() < 0.03:
                j.touch("touch.email_bounced", "email", mail_campaign, bounce_type="hard")
                continue
            if rng.random() < persona.appetite:
                j.wait(6)
                j.touch("touch.email_opened", "email", mail_campaign)
                if rng.random() < persona.appetite * 0.6:
                    j.wait(0.2)
                    j.touch("touch.email_clicked", "email", mail_campaign, url=rng.choice(PAGES))
            if rng.random() < 0.02:
                j.touch("touch.unsubscribed", "email", mail_campaign)
        elif roll < 0.65:
            url = "/pricing" if rng.random() < persona.appetite * 0.4 else rng.choice(PAGES)
            j.touch(
                "touch.page_viewed",
                rng.choice(("organic_search", "direct", channel)),
                None,
                url=url,
            )
        elif roll < 0.8:
            j.touch("touch.content_downloaded", channel, campaign, content=rng.choice(CONTENT))
        elif roll < 0.92:
            webinar = rng.choice(CAMPAIGNS["webinar"])
            j.touch("touch.webinar_registered", "webinar", webinar)
            if rng.random() < persona.appetite:
                j.wait(72)
                j.touch("touch.webinar_attended", "webinar", webinar)
        else:
            j.touch(
                "touch.ad_clicked",
                rng.choice(("paid_social", "paid_search")),
                rng.choice(CAMPAIGNS["paid_social"]),
                url="/lp/revops",
            )


def _sla_share(rng: random.Random) -> float:
    """How much of an SLA allowance a rep takes: mostly well inside it, some late in it (at
    risk until done), a few past it (breached)."""
    roll = rng.random()
    if roll < 0.8:
        return rng.uniform(0.05, 0.7)
    if roll < 0.94:
        return rng.uniform(0.76, 0.98)
    return rng.uniform(1.1, 3.0)


def _within_sla(j: Journey, hours: float) -> None:
    """Move the clock to a rep's action `hours` of the SLA's business hours after MQL."""
    assert j.mql_at is not None
    j.at(add_business_hours(j.mql_at, hours, shipped_sla().business_hours))


def _sales(j: Journey, persona: Persona) -> None:
    """A rep works the lead: after MQL (routed) within the SLA mostly; otherwise outbound."""
    rng = j.rng
    sla = shipped_sla()
    rep = rng.choice(REPS)
    if j.mql_at is not None:
        j.wait(0.2)  # a manual assignment (below) comes just after routing
    else:
        j.wait(20)
    if zlib.crc32(j.key.encode()) % 8 == 0:  # one in eight is assigned by hand upstream
        j.emit("owner.assigned", {"owner": rep, "assigned_by": "crm-user"})
    decision_share = _sla_share(rng)
    first_share = min(_sla_share(rng), decision_share * sla.decision_hours / sla.first_touch_hours)
    if j.mql_at is not None:
        _within_sla(j, first_share * sla.first_touch_hours)
    for attempt in range(rng.randint(1, 4)):
        if attempt:
            j.wait(18 if j.mql_at is None else 1)
        outcome = rng.choices(
            ("connected", "voicemail", "no_answer", "bad_number"), weights=(4, 3, 3, 0.3)
        )[0]
        j.touch(
            "touch.call_logged",
            "sales",
            None,
            direction="outbound",
            outcome=outcome,
            rep=rep,
            duration_seconds=rng.randint(20, 1800) if outcome == "connected" else 0,
        )
        if outcome in ("connected", "bad_number"):
            break
    if j.mql_at is not None:  # routed before or during the calls: the decision is due too
        _within_sla(j, decision_share * sla.decision_hours)
    else:
        j.wait(24)
    accept = 0.25 + 0.75 * persona.sales_ready if j.mql_at is not None else 0.75
    if rng.random() >= accept:
        j.emit("sales.rejected", {"reason": rng.choice(REJECT), "rep": rep})
        if rng.random() < 0.6:
            j.wait(48)
            j.emit("lead.nurture_enrolled", {"program": "recycle-90d", "reason": "rejected"})
        return
    j.emit("sales.accepted", {"rep": rep})
    j.wait(48)
    j.touch("touch.meeting_booked", "sales", None, rep=rep)
    j.wait(96)
    j.touch("touch.meeting_held", "sales", None, rep=rep)
    j.wait(48)
    if rng.random() < 0.3:
        j.emit("sales.disqualified", {"reason": rng.choice(DISQUALIFY), "rep": rep})
        return
    j.emit("sales.qualified", {"rep": rep})
    j.wait(72)
    amount = rng.randrange(5_000, 120_000, 500)
    j.emit("opportunity.opened", {"amount": str(amount), "currency": "USD"})
    j.wait(24 * 20)
    if rng.random() < 0.45:
        j.emit("deal.won", {"amount": str(amount), "currency": "USD"})
    else:
        j.emit("deal.lost", {"reason": rng.choice(LOSS)})


def journey(rng: random.Random, n: int, span_days: int) -> list[dict[str, Any]]:
    persona = _pick_persona(rng)
    key = f"crm-{n:07d}"
    j = Journey(rng, key, BASE + timedelta(seconds=rng.randint(0, span_days * 86400)), score=True)
    channel = rng.choice(tuple(CAMPAIGNS))
    campaign = rng.choice(CAMPAIGNS[channel])
    if channel in ("paid_search", "paid_social"):
        j.touch("touch.ad_clicked", channel, campaign, url="/lp/revops")
    else:
        j.touch("touch.page_viewed", channel, campaign, url=rng.choice(PAGES))
    for _ in range(rng.randint(0, 3)):
        j.wait(30)
        j.touch("touch.page_viewed", channel, campaign, url=rng.choice(PAGES))
    if rng.random() < 0.08:
        return j.events  # never captured: stays anonymous
    j.wait(2)
    form = "demo-request" if rng.random() < persona.appetite * 0.25 else "contact"
    j.touch("touch.form_submitted", channel, campaign, form=form, url="/contact")
    j.emit("lead.captured", {k: v for k, v in _identity(rng, persona, n).items() if v})
    j.wait(1)
    employees = rng.randint(*persona.employees)
    j.emit(
        "lead.profile_updated",
        {
            "industry": rng.choice(persona.industries),
            "employees": employees,
            "annual_revenue": str(employees * rng.randint(80, 300) * 1000),
            "seniority": rng.choice(persona.seniority),
        },
    )
    _engage(j, persona, channel, campaign)
    if j.mql_at is not None or rng.random() < persona.sales_ready * 0.5:
        _sales(j, persona)
    elif rng.random() < 0.3:
        j.wait(24 * 7)
        j.emit("lead.nurture_enrolled", {"program": "long-term", "reason": "not sales-ready"})
    return j.events


def costs(rng: random.Random, span_days: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    months = max(1, span_days // 30 + 1)
    for channel, campaigns in CAMPAIGNS.items():
        for campaign in campaigns:
            for m in range(months):
                start = (BASE + timedelta(days=30 * m)).date().replace(day=1)
                end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
                j = Journey(rng, campaign, datetime(end.year, end.month, end.day, 23, tzinfo=UTC))
                amount = MONTHLY_COST[campaign] * rng.uniform(0.8, 1.2)
                j.emit(
                    "campaign.cost_recorded",
                    {
                        "campaign": campaign,
                        "channel": channel,
                        "amount": f"{amount:.2f}",
                        "currency": "USD",
                        "period_start": start.isoformat(),
                        "period_end": end.isoformat(),
                    },
                    subject=campaign,
                )
                out.extend(j.events)
    return out


def rep_events(rng: random.Random, span_days: int) -> list[dict[str, Any]]:
    """Reps going on leave and coming back, and a capacity change: routing must follow them."""
    out: list[dict[str, Any]] = []
    for rep in REPS:
        j = Journey(rng, rep, BASE + timedelta(days=rng.uniform(10, max(11, span_days - 20))))
        j.emit("rep.availability_changed", {"available": False, "reason": "leave"}, subject=rep)
        j.t += timedelta(days=rng.randint(3, 10))
        j.emit("rep.availability_changed", {"available": True, "reason": "back"}, subject=rep)
        out.extend(j.events)
    j = Journey(rng, REPS[1], BASE + timedelta(days=span_days // 2))
    j.emit(
        "rep.availability_changed",
        {"available": True, "capacity": 25, "reason": "ramped up"},
        subject=REPS[1],
    )
    out.extend(j.events)
    return out


def _event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _shifted(event: dict[str, Any], seconds: int) -> str:
    at = datetime.fromisoformat(event["time"].replace("Z", "+00:00")) + timedelta(seconds=seconds)
    return at.isoformat().replace("+00:00", "Z")


def _identity_event(
    rng: random.Random, type_: str, subject: str, time: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": _event_id(rng),
        "source": "urn:leadengine:demo:identity",
        "type": type_,
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
    }


def stitch(rng: random.Random, events: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Give one captured journey the identity story real upstreams tell (docs/identity.md):
    mostly the web analytics' cookie before the form fill (`identity.linked`), else a duplicate
    lead from a second form, merged later (`lead.merged`), now and then undone
    (`lead.unmerged`). The person's facts stay the same; only the keys they arrive under
    change. Journeys never captured are left alone."""
    key = f"crm-{n:07d}"
    capture = next((i for i, e in enumerate(events) if e["type"] == "lead.captured"), None)
    if capture is None:
        return events
    out = [dict(e) for e in events]
    if rng.random() < 0.6:
        cookie = f"anon-{n:07d}"
        for e in out[:capture]:
            if e["type"].startswith("touch.") and e["type"] != "touch.form_submitted":
                e["subject"] = cookie
        data = {"to": key, "reason": "form fill identified the visitor"}
        out.append(_identity_event(rng, "identity.linked", cookie, out[capture]["time"], data))
        return out
    dup = f"dup-{n:07d}"
    second = {**out[capture], "id": _event_id(rng), "subject": dup}
    second["time"] = _shifted(out[capture], 3600)
    out.append(second)
    for e in out[capture + 1 :]:
        if e["type"].startswith("touch.") and e["time"] > second["time"] and rng.random() < 0.5:
            e["subject"] = dup
    last = max(e["time"] for e in out if e["subject"] == dup)
    data = {"winner": key, "by": "crm-admin", "reason": "same email, two forms"}
    merge = _identity_event(rng, "lead.merged", dup, _shifted({"time": last}, 86400), data)
    out.append(merge)
    if rng.random() < 0.15:
        undo = {**data, "reason": "a colleague sharing the inbox, not the same person"}
        out.append(_identity_event(rng, "lead.unmerged", dup, _shifted(merge, 86400), undo))
    return out


#: default shares of an account's leads writing from free mail (company only) / naming it
FREE_MAIL, NAMING = 0.10, 0.15


def generate(
    leads: int,
    seed: int = 7,
    *,
    span_days: int = 150,
    duplicates: float = 0.01,
    out_of_order: float = 0.01,
    identity: float = 0.0,
    accounts: bool | int = True,
    free_mail: float = FREE_MAIL,
    naming: float = NAMING,
) -> list[dict[str, Any]]:
    """All events of `leads` journeys plus campaign costs (and CRM accounts), in delivery
    order. `identity`: the share of journeys told under several keys (`stitch`), drawn from a
    generator of its own, so the same seed gives the same journeys with or without it.
    `accounts`: True, an account per company domain the leads use (up to COMPANY_DOMAINS per
    company); a number N, exactly N accounts spread over the companies (`with_accounts`);
    False or 0, none. `free_mail` and `naming`: the shares of account leads writing from free
    mail (company only) and naming their account."""
    rng = random.Random(seed)
    # not the accounts' seed (`with_accounts`): the same draws would give their events the same
    # ids, and a reused (source, id) is one event to the engine
    stitching = random.Random(seed * 104_729 + 5)
    events: list[dict[str, Any]] = []
    for n in range(1, leads + 1):
        told = journey(rng, n, span_days)
        if identity and stitching.random() < identity:
            told = stitch(stitching, told, n)
        events.extend(told)
    events.extend(costs(rng, span_days))
    events.extend(rep_events(random.Random(seed * 7919 + 1), span_days))
    events.sort(key=lambda e: (e["time"], e["id"]))
    for i in range(len(events) - 1):
        if rng.random() < out_of_order:
            events[i], events[i + 1] = events[i + 1], events[i]
    dupes = [(i, e) for i, e in enumerate(events) if rng.random() < duplicates]
    for shift, (i, e) in enumerate(dupes):
        events.insert(min(len(events), i + shift + 1 + rng.randint(0, 50)), e)
    if accounts is False or accounts == 0:
        return events
    count = None if accounts is True else int(accounts)
    return with_accounts(events, seed, count=count, free_mail=free_mail, naming=naming)


INDUSTRIES = ("software", "saas", "fintech", "manufacturing", "healthcare", "retail")
#: how CRM users spell the same company's legal form (name matching must see through them)
LEGAL_FORMS = ("Inc.", "Inc", "LLC", "Ltd", "GmbH", "Corp.", "")


#: business domains per company once accounts are on: `acme1.example` .. `acme6.example`
COMPANY_DOMAINS = 6
_NUMBERED = re.compile(r"^(?P<local>[^@]+)@(?P<company>[a-z]+)(?P<n>\d+)\.example$")


def _colleague(email: str) -> str:
    """The e-mail on one of its company's COMPANY_DOMAINS domains (`acme57.example` ->
    `acme3.example`), so an account has several people; other addresses as they are."""
    m = _NUMBERED.match(email)
    if m is None:
        return email
    n = (int(m["n"]) - 1) % COMPANY_DOMAINS + 1
    return f"{m['local']}@{m['company']}{n}.example"


def _spread(count: int) -> dict[str, int]:
    """How many of `count` accounts each company has: one each in COMPANY order, round and
    round (16 accounts over 15 companies: Acme 2, every other 1)."""
    per: dict[str, int] = {}
    for i in range(count):
        company = COMPANY[i % len(COMPANY)].lower()
        per[company] = per.get(company, 0) + 1
    return per


def _on_account(email: str, per: dict[str, int]) -> str:
    """The e-mail moved to one of its company's accounts' domains (`acme57.example` ->
    `acme2.example` when Acme has 3 accounts); a company with none keeps its address."""
    m = _NUMBERED.match(email)
    if m is None or not per.get(m["company"]):
        return email
    n = (int(m["n"]) - 1) % per[m["company"]] + 1
    return f"{m['local']}@{m['company']}{n}.example"


def with_accounts(
    events: list[dict[str, Any]],
    seed: int,
    *,
    count: int | None = None,
    free_mail: float = FREE_MAIL,
    naming: float = NAMING,
) -> list[dict[str, Any]]:
    """CRM accounts for the leads' business domains, added without touching the journeys' own
    randomness: a company's leads on a few shared domains (colleagues: several people per
    account, in the buying-group roles their seniority gives them), one `account.updated` a
    day before the first lead of its domain (some with an
    owner, a target tier, a later tier change), a few leads naming their account (`account`
    attribute), a few writing from free mail with only their company to match on, and some
    companies with two accounts of the same name (an ambiguous name: tie-breakers decide).

    `count` None: an account per company domain the leads use; a number: exactly that many,
    spread over the companies (`_spread`), each company's leads moved onto its accounts'
    domains, an account no lead writes from still sent (the CRM knows it), a company with no
    account keeping its leads on their own domains (matched by no account)."""
    rng = random.Random(seed * 104729 + 3)
    per = _spread(count) if count is not None else {}
    for e in events:  # colleagues: a company's leads share a few domains (several per account)
        if e["type"] == "lead.captured":
            email = e["data"]["email"]
            e["data"]["email"] = _colleague(email) if count is None else _on_account(email, per)
    first: dict[str, tuple[str, str | None]] = {}  # domain -> (first time, company)
    for e in events:
        if e["type"] == "lead.captured":
            domain = e["data"]["email"].rsplit("@", 1)[1]
            if domain.endswith(".example") and domain not in first:
                first[domain] = (e["time"], e["data"].get("company"))
    if count is not None:  # exactly the accounts asked for, with leads or without
        start = min((e["time"] for e in events), default="2026-01-01T00:00:00Z")
        names = {c.lower(): c for c in COMPANY}
        first = {
            f"{c}{k}.example": first.get(f"{c}{k}.example", (start, names[c]))
            for c, n in per.items()
            for k in range(1, n + 1)
        }
    added: list[dict[str, Any]] = []
    account_of: dict[str, str] = {}
    for domain, (when, company) in sorted(first.items()):
        key = "acct-" + domain.removesuffix(".example")
        account_of[domain] = key
        name = f"{company or domain.split('.')[0].title()} {rng.choice(LEGAL_FORMS)}".strip()
        at = datetime.fromisoformat(when.replace("Z", "+00:00")) - timedelta(days=1)
        j = Journey(rng, key, at)
        data: dict[str, Any] = {
            "name": name,
            "domains": [domain],
            "industry": rng.choice(INDUSTRIES),
            "employees": rng.choice((15, 80, 250, 1200, 5000, 20000)),
            "annual_revenue": str(rng.choice((2, 10, 60, 400)) * 1_000_000),
            "country": rng.choice(("US", "GB", "DE", "FR", "BR", "IN")),
            "tier": rng.choice((1, 2, 3, 3)),
        }
        if rng.random() < 0.3:
            data["owner"] = rng.choice(REPS)
        j.emit("account.updated", data, subject=key)
        if rng.random() < 0.2:
            j.t += timedelta(days=rng.randint(5, 60))
            j.emit("account.updated", {"tier": 1}, subject=key)
        added.extend(j.events)
    for e in events:
        if e["type"] != "lead.captured":
            continue
        domain = e["data"]["email"].rsplit("@", 1)[1]
        if domain not in account_of:
            continue
        roll = rng.random()
        if roll < naming:
            e["account"] = account_of[domain]
        elif roll < naming + free_mail and e["data"].get("company"):
            e["data"]["email"] = e["data"]["email"].rsplit("@", 1)[0] + "@gmail.com"
    added.sort(key=lambda e: (e["time"], e["id"]))
    out: list[dict[str, Any]] = []
    pending = iter(added)
    nxt = next(pending, None)
    for e in events:  # the journeys keep their delivery order (late and repeated ones too)
        while nxt is not None and nxt["time"] <= e["time"]:
            out.append(nxt)
            nxt = next(pending, None)
        out.append(e)
    out.extend([] if nxt is None else [nxt, *pending])
    return out


def lines(events: list[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event, separators=(",", ":")) + "\n"
