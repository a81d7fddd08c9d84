"""``jitprov audit export|verify`` and ``jitprov access-review``: the audit log and what
auditors ask for.

``audit verify`` exits 1 when a hash chain is broken."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli.common import CliError, DatabaseUrl, context_for
from jitprov.services import audit_export

audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")


@audit_app.command("export")
def audit_export_cmd(fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
                     tenant: Annotated[str | None, typer.Option()] = None,
                     output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
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
def audit_verify(tenant: Annotated[str | None, typer.Option()] = None,
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


def access_review_cmd(tenant: Annotated[str, typer.Option("--tenant")],
                      fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
                      database_url: DatabaseUrl = None) -> None:
    """Who holds which role, its provenance, when granted, last sign-in (for auditors)."""
    if fmt not in ("csv", "json"):
        raise CliError(f"--format must be csv or json, not {fmt!r}")
    sys.stdout.write(audit_export.access_review(context_for(database_url), tenant, fmt))
