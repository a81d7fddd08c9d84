"""``jitprov break-glass request|approve``: emergency access (two admins, one use)."""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, Reason, context_for
from jitprov.services import break_glass

break_glass_app = typer.Typer(no_args_is_help=True,
                              help="Emergency access (two admins, one use).")


@break_glass_app.command("request")
def break_glass_request(tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
                        roles: Annotated[str, typer.Option("--roles",
                                                           help="comma-separated")],
                        reason: Reason,
                        requested_by: Annotated[str, typer.Option(
                            "--requested-by", help="the first admin")],
                        valid_minutes: Annotated[int, typer.Option(
                            help="how long the code stays usable")] = 60,
                        database_url: DatabaseUrl = None) -> None:
    """First admin: ask for emergency access (a second admin must approve)."""
    request_id = break_glass.request_access(
        context_for(database_url), tenant, roles=roles.split(","), reason=reason,
        requested_by=f"cli:{requested_by}", valid_minutes=valid_minutes)
    typer.echo(f"break-glass request {request_id} waits for a second admin: "
               f"jitprov break-glass approve {request_id} --approved-by NAME")


@break_glass_app.command("approve")
def break_glass_approve(request_id: int,
                        approved_by: Annotated[str, typer.Option(
                            "--approved-by", help="the second admin")],
                        database_url: DatabaseUrl = None) -> None:
    """Second admin: issue the single-use code (shown once)."""
    issued = break_glass.approve_access(context_for(database_url), request_id,
                                        approved_by=f"cli:{approved_by}")
    typer.echo(f"emergency code (single use, until "
               f"{issued.expires_at.isoformat(timespec='minutes')}); enter it at /break-glass:")
    typer.echo(issued.code)
