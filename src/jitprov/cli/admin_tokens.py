"""``jitprov admin-token create|list|revoke``: bearer tokens of the admin API.

A token is printed once; only its hash is stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, context_for, print_rows
from jitprov.services import admin

token_app = typer.Typer(no_args_is_help=True, help="Admin API bearer tokens.")


@token_app.command("create")
def admin_token_create(name: Annotated[str, typer.Option("--name", help="who or what uses it")],
                       expires_days: Annotated[int | None, typer.Option(
                           min=1, help="expire after this many days (default: never)")] = None,
                       database_url: DatabaseUrl = None) -> None:
    """Issue an admin API token. It is shown once; only its hash is stored."""
    token_id, token = admin.create_admin_token(
        context_for(database_url), name,
        expires_in=timedelta(days=expires_days) if expires_days else None)
    typer.echo(f"admin token {token_id} ({name}); shown once, keep it safe:")
    typer.echo(token)


@token_app.command("list")
def admin_token_list(as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """List admin API tokens (never the tokens themselves)."""
    found = admin.list_admin_tokens(context_for(database_url))
    print_rows([{"id": token_id, "name": name, "state": "revoked" if revoked else "active",
                 "expires": expires.isoformat(timespec="seconds") if expires else None,
                 "created": created.isoformat(timespec="seconds")}
                for token_id, name, created, expires, revoked in found],
               ["id", "name", "state", "expires", "created"], as_json=as_json)


@token_app.command("revoke")
def admin_token_revoke(token_id: int, database_url: DatabaseUrl = None) -> None:
    """Revoke an admin API token: refused from the next request."""
    admin.revoke_admin_token(context_for(database_url), token_id)
    typer.echo(f"admin token {token_id} revoked")
