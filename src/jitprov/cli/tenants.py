"""``jitprov tenant create|set-policy|list``: tenants and their account lifecycle, audit
retention and SCIM policies."""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import CliError, DatabaseUrl, context_for
from jitprov.services import admin, lifecycle
from jitprov.services.scim import tokens as scim_tokens

tenant_app = typer.Typer(no_args_is_help=True, help="Tenants.")


@tenant_app.command("create")
def tenant_create(slug: str, name: Annotated[str | None, typer.Option()] = None,
                  database_url: DatabaseUrl = None) -> None:
    """Create a tenant."""
    tenant = admin.create_tenant(context_for(database_url), slug, name)
    typer.echo(f"tenant {tenant.slug} created")


@tenant_app.command("set-policy")
def tenant_set_policy(slug: str,
                      dormant_warn_days: Annotated[int | None, typer.Option(
                          help="warn after this many days without a sign-in")] = None,
                      dormant_deactivate_days: Annotated[int | None, typer.Option(
                          help="deactivate after this many days without a sign-in")] = None,
                      delete_after_days: Annotated[int | None, typer.Option(
                          help="delete accounts deactivated this many days ago")] = None,
                      audit_retention_days: Annotated[int | None, typer.Option(
                          help="keep audit events this many days (default: forever)")] = None,
                      scim_delete: Annotated[str | None, typer.Option(
                          help="SCIM DELETE of a user: deactivate (default) | erase")] = None,
                      scim_on_existing: Annotated[str | None, typer.Option(
                          help="SCIM POST of a JIT account: conflict (default) | adopt")
                      ] = None,
                      clear: Annotated[bool, typer.Option(
                          "--clear", help="turn the lifecycle policy and retention off")
                      ] = False,
                      database_url: DatabaseUrl = None) -> None:
    """Set the account lifecycle policy (the three account options go together) and/or the
    audit retention; what is not given stays as it is."""
    ctx = context_for(database_url)
    lifecycle_given = any(v is not None for v in (dormant_warn_days, dormant_deactivate_days,
                                                  delete_after_days))
    if clear or lifecycle_given:
        lifecycle.set_dormant_policy(ctx, slug, warn_days=dormant_warn_days,
                                     deactivate_days=dormant_deactivate_days,
                                     delete_after_days=delete_after_days)
    if clear or audit_retention_days is not None:
        lifecycle.set_audit_retention(ctx, slug, audit_retention_days)
    if scim_delete is not None or scim_on_existing is not None:
        scim_tokens.set_scim_policy(ctx, slug, delete=scim_delete, on_existing=scim_on_existing)
    if not (clear or lifecycle_given or audit_retention_days is not None
            or scim_delete is not None or scim_on_existing is not None):
        raise CliError("give a policy option, or --clear")
    typer.echo(f"tenant {slug}: dormant accounts warned after {dormant_warn_days or '-'} "
               f"days, deactivated after {dormant_deactivate_days or '-'} days")


@tenant_app.command("list")
def tenant_list(database_url: DatabaseUrl = None) -> None:
    for t in admin.list_tenants(context_for(database_url)):
        typer.echo(f"{t.slug}\t{t.name}")
