"""``jitprov scim-token create|list|revoke``: the bearer tokens of a tenant's SCIM clients.

A token is printed once; only its SHA-256 is stored. Several may be active at once (rotate by
creating the new one, moving the IdP to it, then revoking the old one).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, JsonOutput, context_for, print_rows
from jitprov.services.scim import tokens as scim_tokens

scim_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of SCIM clients (IdPs).")

Tenant = Annotated[str, typer.Option("--tenant", help="the tenant whose /scim/v2/{tenant}/ "
                                                      "the token opens")]


@scim_app.command("create")
def scim_token_create(
        tenant: Tenant,
        name: Annotated[str, typer.Option("--name", help="who uses it, e.g. entra-prod")
                        ] = "scim",
        expires_in: Annotated[int | None, typer.Option(
            "--expires-in", min=1, help="days until it expires (default: never)")] = None,
        connection: Annotated[str | None, typer.Option(
            "--connection", help="the SSO connection whose subjects the IdP's externalId "
                                 "values are: its first login then links to the SCIM user")
        ] = None,
        database_url: DatabaseUrl = None) -> None:
    """Issue a SCIM bearer token for a tenant. It is shown once; only its hash is stored."""
    token_id, token = scim_tokens.create_token(
        context_for(database_url), tenant, name,
        expires_in=timedelta(days=expires_in) if expires_in else None, connection=connection)
    typer.echo(f"SCIM token {token_id} ({name}) for tenant {tenant}; shown once, keep it safe:")
    typer.echo(token)


@scim_app.command("list")
def scim_token_list(tenant: Tenant, as_json: JsonOutput = False,
                    database_url: DatabaseUrl = None) -> None:
    """The tenant's tokens (never the tokens themselves), newest first."""
    def when(moment: datetime | None) -> str | None:
        return moment.isoformat(timespec="seconds") if moment else None
    found = scim_tokens.list_tokens(context_for(database_url), tenant)
    print_rows([{"id": t.id, "name": t.name, "state": "revoked" if t.revoked_at else "active",
                 "expires": when(t.expires_at), "created": when(t.created_at),
                 "last_used": when(t.last_used_at)} for t in found],
               ["id", "name", "state", "expires", "created", "last_used"], as_json=as_json)


@scim_app.command("revoke")
def scim_token_revoke(token_id: int, tenant: Tenant, database_url: DatabaseUrl = None) -> None:
    """Revoke a token: the next request with it is 401 (within 2 seconds on other nodes)."""
    scim_tokens.revoke_token(context_for(database_url), tenant, token_id)
    typer.echo(f"SCIM token {token_id} revoked")
