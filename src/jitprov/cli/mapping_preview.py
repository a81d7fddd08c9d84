"""``jitprov mapping preview|retention``: what a mapping change would do to the people who
recently signed in, and how long their recorded claims are kept.

``preview`` replays a connection's most recent recorded logins (their claims, secrets
redacted) through the mapping in force and through FILE, and lists who would gain or lose
which role, whose profile changes and who would become denied. Nothing is written; save with
``jitprov connection set-mapping``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jitprov.core.mapping.impact import ImpactReport
from jitprov.services import mapping_preview
from jitprov.services.context import ServiceContext

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="JITPROV_DATABASE_URL",
    help="sqlite:///path or postgresql://user@host/db (default: sqlite:///var/jitprov.db)")]


def _context(database_url: str | None) -> ServiceContext:
    # the CLI's own context builder (settings, database disposal at exit) lives in main
    from jitprov.cli import main

    return main._context(main._settings(database_url))


def _read(path: Path) -> str:
    from jitprov.cli import main

    return main._read(path)


def register(mapping_app: typer.Typer) -> None:
    """Add ``preview`` and ``retention`` to the ``mapping`` command group."""
    mapping_app.command("preview")(mapping_preview_cmd)
    mapping_app.command("retention")(mapping_retention_cmd)


def mapping_preview_cmd(
        mapping: Annotated[Path, typer.Argument(help="the proposed mapping YAML file")],
        connection: Annotated[str, typer.Option("--connection", help="the connection slug")],
        limit: Annotated[int, typer.Option(
            "--limit", min=1, max=mapping_preview.MAX_PREVIEW_LIMIT,
            help="how many of the most recent recorded logins to replay")
        ] = mapping_preview.DEFAULT_PREVIEW_LIMIT,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        database_url: DatabaseUrl = None) -> None:
    """Impact preview: who would gain or lose which role, whose profile changes, who would
    be denied, if FILE replaced the connection's mapping. Writes nothing. A bad FILE fails
    with its file, line and rule."""
    text = _read(mapping)
    report = mapping_preview.preview_impact(_context(database_url), connection, text,
                                            str(mapping), limit=limit)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
        return
    for line in describe(report):
        typer.echo(line)
    typer.echo("(preview: nothing was written)")


def describe(report: ImpactReport) -> list[str]:
    """The report as lines for a terminal: one block per person changed."""
    summary = report.as_dict()
    lines = [f"{report.examined} recorded login(s) replayed: {summary['changed']} changed, "
             f"{summary['newly_denied']} newly denied, {summary['undenied']} no longer "
             f"denied, {summary['roles_gained']} role(s) gained, {summary['roles_lost']} lost"]
    for person in report.people:
        lines.append(f"{person.label} ({person.subject}):")
        if person.newly_denied:
            lines.append(f"  DENIED: {person.denied_after} (rule {person.denied_by})")
        if person.undenied:
            lines.append(f"  no longer denied (was: {person.denied_before})")
        for role in person.roles_gained:
            lines.append(f"  + {role} (rule {person.granted_by.get(role, '?')})")
        for role in person.roles_lost:
            lines.append(f"  - {role}")
        for role in person.pending_gained:
            lines.append(f"  + {role} (pending approval)")
        for role in person.pending_lost:
            lines.append(f"  - {role} (approval request withdrawn)")
        for change in person.profile:
            lines.append(f"  {change.field}: {change.before!r} -> {change.after!r}")
    return lines


def mapping_retention_cmd(
        tenant: Annotated[str, typer.Option("--tenant")],
        days: Annotated[int, typer.Option(
            "--days", min=0, max=mapping_preview.MAX_CLAIMS_RETENTION_DAYS,
            help="keep recorded login claims this many days (default 30)")],
        database_url: DatabaseUrl = None) -> None:
    """How long the tenant keeps each identity's last login claims (for previews)."""
    mapping_preview.set_claims_retention(_context(database_url), tenant, days)
    typer.echo(f"tenant {tenant}: recorded login claims kept {days} day(s)")
