"""`leadengine verify`, `anchor` and `lead export`: what an auditor runs."""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from engine.aggregates.lead import Lead
from engine.cli.args import Commands, fmt, handles
from engine.cli.output import prose, render, to_json
from engine.cli.progress import Progress
from engine.domain.errors import LeadEngineError, LeadNotFound
from engine.logs import get_logger
from engine.postgres.chain import links_of
from engine.postgres.keystore import KEYS_TABLE
from engine.postgres.verify import anchor, lead_names, verify
from engine.projections import parking
from engine.runtime import Runtime, open_runtime
from engine.services.history import history_rows, shown_key

log = get_logger(__name__)


def register(commands: Commands) -> None:
    p = commands.add(
        "verify",
        help="recompute the hash chains: exit 1 and the first broken link if anything changed",
        description="Every stored event is hashed into a chain per aggregate in the same "
        "transaction. verify recomputes each chain from the stored bytes and checks the "
        "anchors (table chain_anchors, and --anchors-file if given). Edited, deleted, "
        "reordered or inserted events are reported with the aggregate and version.",
    )
    p.add_argument("key", nargs="?", help="one lead (default: with --all, everything)")
    p.add_argument("--all", action="store_true", help="every aggregate (the default)")
    p.add_argument("--anchors-file", type=Path, help="also check anchors kept in this file")
    fmt(p)
    handles(p, verify_command)
    p = commands.add(
        "forget",
        help="right to erasure: shred a lead's key so its personal data is gone for good",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Personal fields (email, name, phone, call notes) are stored sealed with a "
        "key per lead. forget destroys that key, records an Erased event (who, when, why), "
        "deletes the dead letters that carry the person's data and refreshes the lead's rows. "
        "History, scores, stages, attribution and KPIs replay exactly as before; the personal "
        "data cannot be recovered. Later events for the lead follow rules privacy.after_erasure "
        "(default: recorded without personal data). Running it again is safe.",
        epilog="example:\n  leadengine forget crm-0000042 --reason 'GDPR request #1234' "
        "--by dpo@example.com\n\nThe reason and the operator are kept in the history: "
        "write a ticket number, never the person's name.",
    )
    p.add_argument("key", help="the lead's key upstream")
    p.add_argument("--reason", required=True, help="why (a ticket or request id)")
    p.add_argument("--by", help="who asked for it (default: the OS user)")
    fmt(p)
    handles(p, forget_command)
    p = commands.add(
        "anchor",
        help="hash every chain link so far into an anchor (run daily; keep the file elsewhere)",
    )
    p.add_argument("--file", type=Path, help="also append the anchor to this JSON Lines file")
    handles(p, anchor_command)


def verify_command(args: argparse.Namespace) -> int:
    if args.key and args.all:
        raise LeadEngineError("give a lead KEY or --all, not both")
    with open_runtime(create=False) as rt:
        only = _verified(rt, args.key) if args.key else None
        bar = Progress("verifying")
        report = verify(
            rt.db,
            only,
            anchors_file=args.anchors_file,
            progress=bar.update,
            names=lead_names(rt.app),
        )
        bar.done()
    breaks = [b.as_dict() for b in report.breaks]
    doc = {
        "ok": report.ok,
        "aggregates": report.aggregates,
        "events": report.events,
        "unchained_aggregates": report.unchained_aggregates,
        "chained_from": report.chained_from,
        "notification_gaps": report.notification_gaps,
        "anchors_checked": report.anchors_checked,
        "breaks": breaks,
    }
    if args.format == "json":
        print(to_json(doc))
    elif args.format == "csv":
        print(render("csv", breaks, columns=["aggregate", "key", "version", "problem"]))
    else:
        scope = f"lead {args.key}" if args.key else "every aggregate"
        print(
            f"verified {scope}: {report.events:,} events of {report.aggregates:,} aggregates, "
            f"{report.anchors_checked} anchors; {report.notification_gaps} unused notification "
            f"ids (rolled-back inserts; not a break by themselves)"
        )
        if report.unchained_aggregates:
            print(
                f"{report.unchained_aggregates} aggregates were recorded before hash chains "
                f"(the log is chained from notification {report.chained_from})"
            )
        if report.ok:
            print("OK: every chain verifies")
        else:
            first = report.breaks[0]
            print(
                prose(
                    f"BROKEN: {len(report.breaks)} chain(s); first at aggregate "
                    f"{first.aggregate}{' (lead ' + first.key + ')' if first.key else ''} "
                    f"version {first.version}: {first.problem}"
                )
            )
            print(render("table", breaks, columns=["aggregate", "key", "version", "problem"]))
    return 0 if report.ok else 1


def _verified(rt: Runtime, named: str) -> UUID:
    """The lead `verify KEY` checks: as `lead show` finds it (a forgotten lead by its lead id
    or pseudonym, never by its key), without decoding it (a tampered event may not decode)."""
    lead_id = rt.app.lead_id(named)
    if rt.app.recorder.select_events(lead_id, limit=1):
        if rt.app.keys.shredded(lead_id):
            raise LeadNotFound(named)
        return lead_id
    try:
        lead_id = UUID(named)
    except ValueError:
        return rt.app.resolve(named).id  # a pseudonym (decoded: only to find the lead)
    if not rt.app.recorder.select_events(lead_id, limit=1):
        raise LeadNotFound(named, "key or lead id")
    return lead_id


def anchor_command(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        doc = anchor(rt.db, args.file)
    where = f" and appended to {args.file}" if args.file else ""
    print(
        f"anchored {doc['events']:,} events up to notification {doc['upto_notification_id']}: "
        f"{doc['anchor']} (stored in chain_anchors{where})"
    )
    return 0


def _plain_event(event: Any) -> dict[str, Any]:
    fields = {
        k: v
        for k, v in vars(event).items()
        if k not in ("originator_id", "originator_version", "timestamp")
    }
    return {
        "version": event.originator_version,
        "recorded_at": event.timestamp,
        "kind": type(event).__qualname__,
        **fields,
    }


def export(args: argparse.Namespace) -> int:
    with open_runtime(create=False) as rt:
        ref = rt.app.resolve(args.key)
        events = rt.app.lead_events(ref.id)
        agg_id = ref.id
        rows = history_rows(events, rt.rules)
        links = links_of(rt.db, agg_id)
        report = verify(rt.db, agg_id)
        rules_ref = rt.rules.ref
    chain = {v: {"digest": d, "entry": e} for v, d, e in links}
    decisions = [
        _plain_event(e)
        for e in events
        if isinstance(e, (Lead.MarketingQualified, Lead.StageChanged, Lead.StageRetracted,
                          Lead.Routed, Lead.Linked, Lead.DuplicateDismissed,
                          Lead.RoutingFailed, Lead.AnomalyFlagged, Lead.SlaAlerted))
    ]  # fmt: skip
    doc = {
        "format": "leadengine.lead-export/1",
        "lead": shown_key(events, ref.key),  # the pseudonym once forgotten
        "aggregate_id": str(agg_id),
        "exported_at": datetime.now(UTC),
        "current_rules": rules_ref,
        "chain": {
            "algorithm": "entry(n) = sha256(entry(n-1) || digest(n)); digest(n) = sha256("
            "aggregate id (16 bytes) || version (8 bytes, big endian) || topic || 0x00 || "
            "stored state bytes); entry(0) = empty",
            "verified": report.ok,
            "problems": [b.as_dict() for b in report.breaks],
            "head": links[-1][2] if links else None,
        },
        "events": [{**_plain_event(e), "chain": chain.get(e.originator_version)} for e in events],
        "decisions": decisions,
        "history": rows,
    }
    text = to_json(doc) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(events)} events)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def forget_command(args: argparse.Namespace) -> int:
    """Shred the lead's key, record Erased, purge its dead letters, refresh its rows."""
    by = args.by or getpass.getuser()
    with open_runtime(create=False) as rt:
        result = rt.app.forget(args.key, reason=args.reason, by=by, at=datetime.now(UTC))
        purged = rt.deadletters.purge_person(args.key, result.personal_values)
        # the shredded key's old row version and purged dead letters must not linger on disk
        rt.db.vacuum_full(KEYS_TABLE)
        if purged:
            rt.deadletters.vacuum()
        projected = rt.projector.run(until_caught_up=True)
        with rt.db.connect() as conn:  # a parked lead's rows are skipped by the projector
            for each in (result, *result.members):  # the person's every lead (identity.md)
                parking.rekey(conn, rt.db.schema, each.lead_id, each.pseudonym)
    log.info(  # the audit trail of the erasure itself: nothing personal in it (not the key)
        "lead forgotten",
        lead=result.pseudonym,
        lead_id=str(result.lead_id),
        already=result.already,
        key_shredded=result.key_shredded,
        dead_letters_purged=purged,
        person_leads=[m.pseudonym for m in result.members],
        by=by,
    )
    shown = result.pseudonym  # what the operator's terminal and logs may keep
    doc = {
        "key": shown,
        "lead_id": str(result.lead_id),
        "erased": not result.already,
        "already_forgotten": result.already,
        "key_shredded": result.key_shredded,
        "dead_letters_purged": purged,
        "person_leads_forgotten": sum(not m.already for m in result.members),
        "events_projected": projected,
        "by": by,
        "reason": args.reason,
    }
    if args.format == "json":
        print(to_json(doc))
    elif args.format == "csv":
        print(render("csv", [doc]), end="")
    elif result.already:
        print(
            f"lead {shown} was already forgotten; key shredded: "
            f"{'now' if result.key_shredded else 'yes (earlier)'}; "
            f"{purged} dead letter(s) purged"
        )
    else:
        print(
            f"forgot lead {shown}: key shredded, Erased recorded (by {by}: {args.reason}); "
            f"{purged} dead letter(s) purged; history, scores and reports replay unchanged"
        )
    return 0
