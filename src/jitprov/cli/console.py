"""``jitprov admin bootstrap|revoke-sessions``: getting into the admin console at ``/admin``.

``bootstrap`` prints a one-time link (single use, 15 minutes; only its SHA-256 is stored) for
the first administrator, or when SSO is not set up yet. The link's code is in its fragment
(after ``#``), which browsers never send to a server.
"""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, context_for, public_settings, service_context
from jitprov.services import console

console_app = typer.Typer(no_args_is_help=True, help="The admin console (/admin).")


@console_app.command("bootstrap")
def bootstrap(
        tenant: Annotated[str | None, typer.Option(
            "--tenant", help="the one tenant the session administers (default: every tenant)")
        ] = None,
        database_url: DatabaseUrl = None) -> None:
    """Print a one-time admin console link (single use, expires in 15 minutes)."""
    settings = public_settings(database_url)
    ctx, base_url = service_context(settings), settings.base_url
    link = console.create_bootstrap_link(ctx, base_url, tenant=tenant,
                                               created_by="cli")
    scope = f"tenant {tenant}" if tenant else "every tenant"
    typer.echo(f"One-time admin console link for {scope} (single use, expires "
               f"{link.expires_at.isoformat(timespec='seconds')}):")
    typer.echo(link.url)


@console_app.command("revoke-sessions")
def revoke_sessions(
        account: Annotated[str | None, typer.Option(
            "--account", help="only this account's admin sessions (default: every one)")
        ] = None,
        database_url: DatabaseUrl = None) -> None:
    """End open admin console sessions at once."""
    ctx = context_for(database_url)
    count = console.revoke_admin_sessions(ctx, account_id=account)
    typer.echo(f"{count} admin session(s) revoked")
