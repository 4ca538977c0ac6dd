"""Issue 16's six weekly RevOps questions, answered as a data team would: a reporting login
made with `leadengine db grant-reporting`, dbt-style models (`CREATE TABLE ... AS SELECT`) in its
own schema over the `<schema>_read` views only, with the rules read from `rules_in_force`.
Each answer equals the CLI's figures exactly, on a dataset made by the demo generator.

1. MQLs per week by first-touch channel      `report kpis --section flow --period week`
2. monthly cohort conversion                  `report kpis --section funnel --from M --to M+1`
3. speed to lead, SLA breaches per owner      `report kpis --section followup`, `report sla`
4. campaign revenue, cost per customer, ROI   `report kpis --section money --by campaign`
5. pipeline by stage (and owner)              `report funnel` (the CLI has no owner split)
6. linear attribution by channel              `report attribution --model linear --by channel`
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from engine.readmodel import read_schema
from engine.runtime import Runtime

#: The job's models, as a dbt project would hold them: `{r}` is the contract's schema.
MODELS = {
    # 1. the official MQL moment (reached mql or later), bucketed by Monday in UTC
    "mqls_per_week": """
        SELECT to_char(date_trunc('week', mql_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS week,
               coalesce(source_channel, '(none)') AS channel, count(*) AS mqls
        FROM {r}.lead_current WHERE mql_at IS NOT NULL GROUP BY 1, 2""",
    # 2. leads captured each month (UTC) and how many reached each funnel stage by now
    "monthly_cohorts": """
        SELECT to_char(captured_at AT TIME ZONE 'UTC', 'YYYY-MM') AS cohort,
               count(*) AS lead, count(mql_at) AS mql, count(sal_at) AS sal,
               count(sql_at) AS sql, count(opportunity_at) AS opportunity,
               count(customer_at) AS customer
        FROM {r}.lead_current WHERE captured_at IS NOT NULL GROUP BY 1""",
    # 3a. speed to lead: MQLs, owned (routed or assigned) after the MQL moment, to the first
    # touch of a type the rules in force count as a first sales touch
    "speed_to_lead": """
        WITH mql AS (SELECT lead_id, mql_at FROM {r}.lead_current WHERE mql_at IS NOT NULL),
        decision AS (
            SELECT DISTINCT ON (m.lead_id) m.lead_id, d.type
            FROM mql m JOIN {r}.lead_milestones d ON d.lead_id = m.lead_id
             AND d.type IN ('sales.accepted', 'sales.rejected') AND d.occurred_at >= m.mql_at
            ORDER BY m.lead_id, d.occurred_at),
        owned AS (
            SELECT m.lead_id, min(o.occurred_at) AS owned_at
            FROM mql m JOIN {r}.lead_owner_history o ON o.lead_id = m.lead_id
             AND o.outcome IN ('routed', 'assigned') AND o.occurred_at >= m.mql_at
            GROUP BY 1),
        touched AS (
            SELECT w.lead_id, w.owned_at, min(t.occurred_at) AS touch_at
            FROM owned w LEFT JOIN {r}.lead_touchpoints t ON t.lead_id = w.lead_id
             AND t.occurred_at >= w.owned_at
             AND t.type IN (SELECT jsonb_array_elements_text(sla_first_touch_types)
                            FROM {r}.rules_in_force WHERE in_force)
            GROUP BY 1, 2),
        speed AS (
            SELECT extract(epoch FROM touch_at - owned_at)::float8 / 3600 AS hours
            FROM touched WHERE touch_at IS NOT NULL)
        SELECT (SELECT count(*) FROM mql) AS mqls,
               (SELECT count(*) FROM decision WHERE type = 'sales.accepted') AS accepted,
               (SELECT count(*) FROM decision WHERE type = 'sales.rejected') AS rejected,
               (SELECT count(*) FROM touched) AS owned,
               (SELECT count(touch_at) FROM touched) AS touched,
               (SELECT count(*) - count(touch_at) FROM touched) AS not_yet_touched,
               round((percentile_cont(0.5) WITHIN GROUP (ORDER BY hours))::numeric, 2)
                 AS speed_to_lead_median_hours,
               round((percentile_cont(0.9) WITHIN GROUP (ORDER BY hours))::numeric, 2)
                 AS speed_to_lead_p90_hours,
               round(avg(hours)::numeric, 2) AS speed_to_lead_average_hours
        FROM speed""",
    # 3b. SLA per owner and queue (latest routing round), evaluated now
    "sla_per_owner": """
        SELECT owner, queue, count(*) AS leads,
               count(*) FILTER (WHERE first_touch_at <= first_touch_due) AS first_touch_met,
               count(*) FILTER (WHERE first_touch_at > first_touch_due
                                   OR (first_touch_at IS NULL AND now() > first_touch_due))
                 AS first_touch_breached,
               count(*) FILTER (WHERE first_touch_at IS NULL AND now() <= first_touch_due)
                 AS first_touch_open,
               count(*) FILTER (WHERE decided_at <= decision_due) AS decision_met,
               count(*) FILTER (WHERE decided_at > decision_due
                                   OR (decided_at IS NULL AND now() > decision_due))
                 AS decision_breached
        FROM {r}.lead_sla GROUP BY 1, 2""",
    # 4. per source campaign: cost, customers, revenue, linear revenue attribution and ROI;
    # credits rounded to cents by largest remainder (ties: key in code-point order)
    "campaign_money": """
        WITH lead AS (
            SELECT lead_id, coalesce(source_campaign, '(none)') AS campaign, captured_at,
                   mql_at, sql_at, customer_at FROM {r}.lead_current),
        won AS (SELECT lead_id, sum(amount) AS revenue FROM {r}.lead_milestones
                WHERE type = 'deal.won' GROUP BY 1),
        conv AS (SELECT l.lead_id, l.customer_at AS at, coalesce(w.revenue, 0) AS value
                 FROM lead l LEFT JOIN won w USING (lead_id) WHERE l.customer_at IS NOT NULL),
        path AS (
            SELECT c.lead_id, c.value, coalesce(t.campaign, '(none)') AS key
            FROM conv c JOIN {r}.lead_touchpoints t ON t.lead_id = c.lead_id
             AND t.occurred_at <= c.at
            WHERE t.type NOT IN (SELECT jsonb_array_elements_text(attribution_exclude_types)
                                 FROM {r}.rules_in_force WHERE in_force)),
        n AS (SELECT lead_id, count(*) AS n, min(value) AS value FROM path GROUP BY 1),
        raw AS (SELECT p.key, sum(p.value / n.n) AS raw FROM path p JOIN n USING (lead_id)
                GROUP BY 1),
        units AS (SELECT round(sum(value) * 100) AS units FROM n),
        scaled AS (SELECT key, raw * (SELECT units FROM units)
                               / nullif((SELECT sum(raw) FROM raw), 0) AS scaled FROM raw),
        ranked AS (SELECT key, floor(scaled) AS whole,
                          row_number() OVER (ORDER BY scaled - floor(scaled) DESC,
                                             key COLLATE "C") AS place FROM scaled),
        credit AS (
            SELECT key, (whole + CASE WHEN place <= (SELECT units FROM units)
                         - (SELECT sum(whole) FROM ranked) THEN 1 ELSE 0 END) / 100 AS credit
            FROM ranked
            UNION ALL
            SELECT '(no touchpoint)', sum(value) FROM conv
            WHERE lead_id NOT IN (SELECT lead_id FROM n) HAVING sum(value) > 0),
        cost AS (SELECT campaign, sum(amount) AS cost FROM {r}.campaign_costs GROUP BY 1),
        counts AS (
            SELECT campaign, count(customer_at) AS customers,
                   sum(coalesce(w.revenue, 0)) AS revenue
            FROM lead LEFT JOIN won w USING (lead_id) GROUP BY 1),
        campaigns AS (SELECT campaign FROM cost UNION SELECT campaign FROM counts
                      UNION SELECT key FROM credit)
        SELECT k.campaign, round(coalesce(c.cost, 0), 2) AS cost,
               coalesce(n.customers, 0) AS customers,
               round(coalesce(c.cost, 0) / nullif(n.customers, 0), 2) AS cost_per_customer,
               round(coalesce(n.revenue, 0), 2) AS revenue,
               round(a.credit, 2) AS attributed_revenue,
               round((round(a.credit, 2) - round(c.cost, 2)) / nullif(round(c.cost, 2), 0)
                     * 100, 1) AS roi_pct
        FROM campaigns k LEFT JOIN cost c USING (campaign) LEFT JOIN counts n USING (campaign)
        LEFT JOIN credit a ON a.key = k.campaign""",
    # 5. where the leads are now, by stage and owner
    "pipeline": """
        SELECT stage, coalesce(owner, '(none)') AS owner, count(*) AS leads
        FROM {r}.lead_current GROUP BY 1, 2""",
    # 6. linear attribution of conversions to `customer` by channel, to 4 decimals
    "linear_by_channel": """
        WITH conv AS (SELECT lead_id, customer_at AS at FROM {r}.lead_current
                      WHERE customer_at IS NOT NULL),
        path AS (
            SELECT c.lead_id, t.channel AS key
            FROM conv c JOIN {r}.lead_touchpoints t ON t.lead_id = c.lead_id
             AND t.occurred_at <= c.at
            WHERE t.type NOT IN (SELECT jsonb_array_elements_text(attribution_exclude_types)
                                 FROM {r}.rules_in_force WHERE in_force)),
        n AS (SELECT lead_id, count(*) AS n FROM path GROUP BY 1),
        raw AS (SELECT p.key, sum(1.0 / n.n) AS raw FROM path p JOIN n USING (lead_id)
                GROUP BY 1),
        units AS (SELECT count(*) * 10000 AS units FROM n),
        scaled AS (SELECT key, raw * (SELECT units FROM units) / (SELECT sum(raw) FROM raw)
                       AS scaled FROM raw),
        ranked AS (SELECT key, floor(scaled) AS whole,
                          row_number() OVER (ORDER BY scaled - floor(scaled) DESC,
                                             key COLLATE "C") AS place FROM scaled)
        SELECT key AS channel,
               (whole + CASE WHEN place <= (SELECT units FROM units)
                - (SELECT sum(whole) FROM ranked) THEN 1 ELSE 0 END) / 10000.0 AS credit
        FROM ranked
        UNION ALL
        SELECT '(no touchpoint)', count(*) FROM conv WHERE lead_id NOT IN (SELECT lead_id FROM n)
        HAVING count(*) > 0""",
}


@pytest.fixture
def dataset(runtime: Runtime, leadengine: Any, tmp_path: Path) -> Runtime:
    path = tmp_path / "events.jsonl"
    assert leadengine("generate", "--leads", "400", "--seed", "16", "-o", str(path))[0] == 0
    assert leadengine("ingest", str(path))[0] == 0
    assert leadengine("project")[0] == 0
    code, out = leadengine("db", "init")
    assert code == 0 and "can read them and nothing else" in out, out
    return runtime


@pytest.fixture
def job(dataset: Runtime, leadengine: Any, server_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The reporting job's own login, set up by `db grant-reporting`, connected as the job."""
    name = f"revops_{uuid.uuid4().hex[:8]}"
    with dataset.db.connect() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        assert leadengine("db", "grant-reporting", name)[0] == 0, leadengine.stderr[-1]
        params = conninfo_to_dict(server_url) | {"user": name}
        with psycopg.connect(make_conninfo(**params), autocommit=True) as conn:
            yield conn
    finally:
        with dataset.db.connect() as admin:
            admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _cli(leadengine: Any, *argv: str) -> Any:
    code, out = leadengine(*argv, "--format", "json")
    assert code == 0, leadengine.stderr[-1]
    return json.loads(out)


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _next_month(month: str) -> str:
    first = date.fromisoformat(month + "-01")
    return (first.replace(year=first.year + 1, month=1) if first.month == 12
            else first.replace(month=first.month + 1)).isoformat()  # fmt: skip


def test_the_six_questions_reproduce_the_cli_exactly(
    dataset: Runtime, job: psycopg.Connection[Any], leadengine: Any
) -> None:
    login = job.info.user
    read = sql.Identifier(read_schema(dataset.db.schema))
    answers: dict[str, list[dict[str, Any]]] = {}
    for name, query in MODELS.items():  # dbt run: one table per model in the job's schema
        model = sql.Identifier(login, name)
        job.execute(sql.SQL("CREATE TABLE {} AS ").format(model) + sql.SQL(query).format(r=read))
        with job.cursor(row_factory=psycopg.rows.dict_row) as cur:
            answers[name] = cur.execute(sql.SQL("SELECT * FROM {}").format(model)).fetchall()
        assert answers[name], name

    # 1. MQLs per week by first-touch channel
    flow = _cli(leadengine, "report", "kpis", "--section", "flow", "--period", "week")["flow"]
    expected = {(r["week"], r["source_channel"]): r["mql"] for r in flow if r["mql"]}
    assert {(a["week"], a["channel"]): a["mqls"] for a in answers["mqls_per_week"]} == expected
    assert sum(expected.values()) > 50

    # 2. monthly cohort conversion
    stages = ("lead", "mql", "sal", "sql", "opportunity", "customer")
    assert len(answers["monthly_cohorts"]) >= 3
    for cohort in answers["monthly_cohorts"]:
        month = cohort["cohort"]
        funnel = _cli(leadengine, "report", "kpis", "--section", "funnel",
                      "--from", month + "-01", "--to", _next_month(month))["funnel"]  # fmt: skip
        assert {r["stage"]: r["reached"] for r in funnel} == {s: cohort[s] for s in stages}, month

    # 3. speed to lead (MQLs owned after the MQL) and SLA breaches per owner
    (followup,) = _cli(leadengine, "report", "kpis", "--section", "followup")["followup"]
    (speed,) = answers["speed_to_lead"]
    del followup["acceptance_pct"]  # accepted / (accepted + rejected), compared through them
    assert {k: _money(v) for k, v in followup.items()} == {k: _money(speed[k]) for k in followup}
    assert speed["touched"] > 20
    sla = _cli(leadengine, "report", "sla")["by_owner"]
    expected_sla = {
        (r["owner"], r["queue"]): (
            r["leads"],
            r["first_touch_met"],
            r["first_touch_breached"],
            r["first_touch_at_risk"] + r["first_touch_pending"],
            r["decision_met"],
            r["decision_breached"],
        )
        for r in sla
    }
    found_sla = {
        (a["owner"], a["queue"]): (
            a["leads"],
            a["first_touch_met"],
            a["first_touch_breached"],
            a["first_touch_open"],
            a["decision_met"],
            a["decision_breached"],
        )
        for a in answers["sla_per_owner"]
    }
    assert found_sla == expected_sla
    assert sum(v[2] for v in found_sla.values()) > 0  # some breaches to count

    # 4. campaign revenue, cost per customer, ROI (linear attributed revenue)
    money = _cli(leadengine, "report", "kpis", "--section", "money", "--by", "campaign",
                 "--model", "linear")["money"]  # fmt: skip
    fields = ("cost", "customers", "cost_per_customer", "revenue", "attributed_revenue",
              "roi_pct")  # fmt: skip
    expected_money = {
        r["campaign"]: tuple(_money(r[f]) for f in fields)
        for r in money
        if r["campaign"] != "TOTAL"
    }
    found_money = {
        a["campaign"]: tuple(_money(a[f]) for f in fields) for a in answers["campaign_money"]
    }
    assert found_money == expected_money
    assert any(v[5] is not None for v in found_money.values())

    # 5. pipeline by stage (the CLI's `now`), split by owner in SQL
    funnel_now = _cli(leadengine, "report", "funnel")
    now = {r["stage"]: r["now"] for r in funnel_now["stages"]} | funnel_now["exits_now"]
    now["anonymous"] = funnel_now["anonymous_now"]
    pipeline: dict[str, int] = {}
    for a in answers["pipeline"]:
        pipeline[a["stage"]] = pipeline.get(a["stage"], 0) + a["leads"]
    assert pipeline == {s: n for s, n in now.items() if n}
    assert len({a["owner"] for a in answers["pipeline"]}) > 2

    # 6. linear attribution by channel
    report = _cli(leadengine, "report", "attribution", "--model", "linear", "--by", "channel")
    expected_credit = {r["channel"]: Decimal(r["credit"]) for r in report["models"]["linear"]}
    found_credit = {a["channel"]: a["credit"] for a in answers["linear_by_channel"]}
    assert found_credit == expected_credit
    assert sum(found_credit.values()) == Decimal(report["total"])
