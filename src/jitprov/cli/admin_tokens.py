"""``jitprov admin-token create|list|revoke``: bearer tokens of the admin API.

A token is printed once; only its hash is stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, context_for
from jitprov.services import admin

token_app = typer.Typer(no_args_is_help=True, help="Admin API bearer tokens.")


@token_app.command("create")
def admin_token_create(name: Annotated[str, typer.Option("--name")],
                       expires_days: Annotated[int | None, typer.Option(min=1)] = None,
                       database_url: DatabaseUrl = None) -> None:
    """Issue an admin API token. It is shown once; only its hash is stored."""
    token_id, token = admin.create_admin_token(
        context_for(database_url), name,
        expires_in=timedelta(days=expires_days) if expires_days else None)
    typer.echo(f"admin token {token_id} ({name}); shown once, keep it safe:")
    typer.echo(token)


@token_app.command("list")
def admin_token_list(database_url: DatabaseUrl = None) -> None:
    for token_id, name, created, expires, revoked in admin.list_admin_tokens(
            context_for(database_url)):
        state = "revoked" if revoked else "active"
        until = f" until {expires.isoformat(timespec='seconds')}" if expires else ""
        typer.echo(f"{token_id}\t{name}\t{state}{until}\tcreated "
                   f"{created.isoformat(timespec='seconds')}")


@token_app.command("revoke")
def admin_token_revoke(token_id: int, database_url: DatabaseUrl = None) -> None:
    admin.revoke_admin_token(context_for(database_url), token_id)
    typer.echo(f"admin token {token_id} revoked")
