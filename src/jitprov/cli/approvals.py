"""``jitprov approvals list|approve|deny``: roles waiting for an approver."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, Reason, context_for, print_rows
from jitprov.services import accounts

approvals_app = typer.Typer(no_args_is_help=True, help="Roles waiting for approval.")


@approvals_app.command("list")
def approvals_list(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                   as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """Roles waiting for an approver, oldest first."""
    requests = accounts.list_requests(context_for(database_url), tenant)
    print_rows([{"id": r.id, "role": r.role, "account": r.email or r.account_id,
                 "requested_by": r.source,
                 "requested_at": r.requested_at.isoformat(timespec="seconds")}
                for r in requests], ["id", "role", "account", "requested_by", "requested_at"],
               as_json=as_json)


@approvals_app.command("approve")
def approvals_approve(request_id: int, reason: Reason,
                      approver: Annotated[str, typer.Option(
                          "--approver", help="who approves (recorded in the audit log)")],
                      valid_days: Annotated[int | None, typer.Option(
                          min=1, max=3650,
                          help="time-bound access: the grant expires after")] = None,
                      database_url: DatabaseUrl = None) -> None:
    """Grant a requested role (source: approval; rules never revoke it)."""
    decision = accounts.decide_request(
        context_for(database_url), request_id, approve=True, reason=reason,
        approver=f"cli:{approver}",
        valid_for=timedelta(days=valid_days) if valid_days else None)
    until = f" until {decision.expires_at.isoformat(timespec='seconds')}" \
        if decision.expires_at else ""
    typer.echo(f"request {request_id}: {decision.request.role} granted to "
               f"{decision.request.email or decision.request.account_id}{until}")


@approvals_app.command("deny")
def approvals_deny(request_id: int, reason: Reason,
                   approver: Annotated[str, typer.Option("--approver", help="who decides")],
                   database_url: DatabaseUrl = None) -> None:
    """Refuse a requested role (audited; the role is not granted)."""
    decision = accounts.decide_request(context_for(database_url), request_id,
                                        approve=False, reason=reason,
                                        approver=f"cli:{approver}")
    typer.echo(f"request {request_id}: {decision.request.role} denied")
