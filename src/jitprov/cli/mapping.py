"""``jitprov mapping check|test|preview|retention``: mapping files, what they decide, what a
change would do to the people who recently signed in, and how long their recorded claims are
kept.

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

from jitprov.cli.common import CliError, DatabaseUrl, JsonOutput, context_for, read_text
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import load_policy
from jitprov.core.mapping.impact import ImpactReport
from jitprov.services import mapping_preview
from jitprov.services.login.flow import DryRun, dry_run_login

mapping_app = typer.Typer(no_args_is_help=True, help="Mapping files.")


@mapping_app.command("preview")
def mapping_preview_cmd(
        mapping: Annotated[Path, typer.Argument(help="the proposed mapping YAML file")],
        connection: Annotated[str, typer.Option("--connection", help="the connection slug")],
        limit: Annotated[int, typer.Option(
            "--limit", min=1, max=mapping_preview.MAX_PREVIEW_LIMIT,
            help="how many of the most recent recorded logins to replay")
        ] = mapping_preview.DEFAULT_PREVIEW_LIMIT,
        as_json: JsonOutput = False,
        database_url: DatabaseUrl = None) -> None:
    """Impact preview: who would gain or lose which role, whose profile changes, who would
    be denied, if FILE replaced the connection's mapping. Writes nothing. A bad FILE fails
    with its file, line and rule."""
    text = read_text(mapping)
    report = mapping_preview.preview_impact(context_for(database_url), connection, text,
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


@mapping_app.command("retention")
def mapping_retention_cmd(
        tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
        days: Annotated[int, typer.Option(
            "--days", min=0, max=mapping_preview.MAX_CLAIMS_RETENTION_DAYS,
            help="keep recorded login claims this many days (default 30)")],
        database_url: DatabaseUrl = None) -> None:
    """How long the tenant keeps each identity's last login claims (for previews)."""
    mapping_preview.set_claims_retention(context_for(database_url), tenant, days)
    typer.echo(f"tenant {tenant}: recorded login claims kept {days} day(s)")


@mapping_app.command("check")
def mapping_check(mapping: Annotated[Path, typer.Argument(help="the mapping YAML file")]) -> None:
    """Validate a mapping file; errors name the file, line and rule."""
    policy = load_policy(read_text(mapping), str(mapping))
    typer.echo(f"{mapping}: ok ({policy.summary})")


@mapping_app.command("test")
def mapping_test(connection: Annotated[str, typer.Option("--connection", help="connection slug")],
                 claims: Annotated[Path | None, typer.Option(
                     "--claims", help="JSON object of claims")] = None,
                 subject: Annotated[str | None, typer.Option(
                     help="the IdP subject (default: the claims' sub)")] = None,
                 recorded: Annotated[str | None, typer.Option(
                     "--recorded", help="test the recorded last login of this IdP subject "
                     "instead of --claims")] = None,
                 as_json: JsonOutput = False,
                 database_url: DatabaseUrl = None) -> None:
    """Dry run: the decision and rule trace a login with these claims (or the recorded
    login of a subject) would get, and the claims the rules read that it did not carry.
    Writes nothing."""
    if (claims is None) == (recorded is None):
        raise CliError("give --claims FILE or --recorded SUBJECT")
    if recorded is not None:
        _print_dry_run(mapping_preview.test_mapping(context_for(database_url), connection,
                                                    recorded_subject=recorded), as_json)
        return
    assert claims is not None  # noqa: S101 - checked above
    text = read_text(claims)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{claims}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{claims}: the claims must be one JSON object")
    sub = subject or data.get("sub")
    if not isinstance(sub, str) or not sub:
        raise CliError(f"{claims}: no subject: give --subject or a string 'sub' claim")
    result = dry_run_login(context_for(database_url), connection,
                           ExternalIdentity(issuer="dry-run", subject=sub, claims=data))
    _print_dry_run(result, as_json)


def _print_dry_run(result: DryRun, as_json: bool) -> None:
    decision = result.decision
    out = result.as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    typer.echo(f"decision: {decision.kind}")
    for key in ("code", "reason", "rule", "account_id"):
        if key in out:
            typer.echo(f"{key}: {out[key]}")
    if "changes" in out:
        typer.echo("changes: " + json.dumps(out["changes"], sort_keys=True))
    typer.echo("trace:")
    for entry in decision.trace:
        line = f" (line {entry.line})" if entry.line else ""
        roles = f" [{', '.join(entry.roles)}]" if entry.roles else ""
        detail = f": {entry.detail}" if entry.detail else ""
        typer.echo(f"  {entry.kind:<8} {entry.rule}{line}: {entry.outcome}{roles}{detail}")
    for claim, readers in result.absent_claims.items():
        typer.echo(f"absent claim: {claim!r}, read by {', '.join(readers)} (check the "
                   "connection's scopes and the IdP's claim configuration)")
    typer.echo("(dry run: nothing was written)")
