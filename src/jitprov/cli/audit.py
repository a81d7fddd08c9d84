"""``jitprov audit export|verify|search`` and ``jitprov access-review``: the audit log and what
auditors ask for.

``audit verify`` exits 1 when a hash chain is broken."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli.common import CliError, DatabaseUrl, context_for
from jitprov.services import audit_export
from jitprov.services.records import AuditFilter

audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")


@audit_app.command("export")
def audit_export_cmd(fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
                     tenant: Annotated[str | None, typer.Option(
                         help="one tenant (default: all)")] = None,
                     output: Annotated[Path | None, typer.Option(
                         "--output", "-o", help="write to this file")] = None,
                     database_url: DatabaseUrl = None) -> None:
    """Write the audit log as JSONL or CSV (stdout unless --output)."""
    if fmt not in ("jsonl", "csv"):
        raise CliError(f"--format must be jsonl or csv, not {fmt!r}")
    ctx = context_for(database_url)
    lines = audit_export.export_lines(ctx, fmt, tenant)
    if output is None:
        for line in lines:
            sys.stdout.write(line)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as fh:
            fh.writelines(lines)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc}") from exc


@audit_app.command("verify")
def audit_verify(tenant: Annotated[str | None, typer.Option(
                         help="one tenant (default: all)")] = None,
                 database_url: DatabaseUrl = None) -> None:
    """Check the hash chains: an edited, deleted or reordered event is reported (exit 1)."""
    reports = audit_export.verify(context_for(database_url), tenant)
    broken = False
    for r in reports:
        if r.intact:
            typer.echo(f"tenant {r.tenant}: {r.events} events, chain intact")
        else:
            broken = True
            for p in r.problems:
                typer.echo(f"tenant {r.tenant}: BROKEN: {p}")
    if broken:
        raise typer.Exit(1)


@audit_app.command("search")
def audit_search(request_id: Annotated[str | None, typer.Option(
                     "--request-id", help="the request id an error page or a log line shows")
                 ] = None,
                 event_type: Annotated[str | None, typer.Option(
                     "--type", help="an event type, or a prefix ending in a dot (login.)")
                 ] = None,
                 account: Annotated[str | None, typer.Option(
                     "--account", help="an account id")] = None,
                 tenant: Annotated[str | None, typer.Option(
                     help="one tenant (default: every tenant)")] = None,
                 limit: Annotated[int, typer.Option(min=1, max=1000,
                                                    help="at most this many events")] = 50,
                 as_json: Annotated[bool, typer.Option(
                     "--json", help="one JSON object per line, as `audit export`")] = False,
                 database_url: DatabaseUrl = None) -> None:
    """Find audit events, newest first: by request id (what a user quotes from an error
    page), type or account."""
    if not (request_id or event_type or account):
        raise CliError("give --request-id, --type or --account")
    flt = AuditFilter(type=event_type or None, account_id=account or None,
                      request_id=request_id or None)
    events = audit_export.search(context_for(database_url), flt, tenant, limit=limit)
    if as_json:
        for ev in events:
            typer.echo(json.dumps(ev.as_dict(), ensure_ascii=False, sort_keys=True))
        return
    if not events:
        typer.echo("none")
        return
    for ev in events:
        typer.echo(f"{ev.occurred_at.isoformat(timespec='seconds')}  {ev.tenant}#{ev.seq}  "
                   f"{ev.type}  actor={ev.actor}  account={ev.account_id or '-'}  "
                   f"request={ev.request_id or '-'}")


def access_review_cmd(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                      fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
                      database_url: DatabaseUrl = None) -> None:
    """Who holds which role, its provenance, when granted, last sign-in (for auditors)."""
    if fmt not in ("csv", "json"):
        raise CliError(f"--format must be csv or json, not {fmt!r}")
    sys.stdout.write(audit_export.access_review(context_for(database_url), tenant, fmt))
