"""``jitprov tenant create|show|set-policy|list|add-domain|remove-domain|domains``: tenants,
their account lifecycle, audit retention and SCIM policies, and their verified email domains
(home-realm discovery)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from jitprov.cli.common import CliError, DatabaseUrl, JsonOutput, context_for, print_rows
from jitprov.services import admin, discovery, lifecycle
from jitprov.services.context import ServiceContext
from jitprov.services.scim import tokens as scim_tokens

tenant_app = typer.Typer(no_args_is_help=True, help="Tenants and their policies.")


@tenant_app.command("create")
def tenant_create(slug: str, name: Annotated[str | None, typer.Option(
                      help="display name (default: the slug)")] = None,
                  database_url: DatabaseUrl = None) -> None:
    """Create a tenant."""
    tenant = admin.create_tenant(context_for(database_url), slug, name)
    typer.echo(f"tenant {tenant.slug} created")


def _policy(ctx: ServiceContext, slug: str) -> dict[str, object]:
    dormant, retention = lifecycle.lifecycle_policy(ctx, slug)
    scim = scim_tokens.get_scim_policy(ctx, slug)
    return {"tenant": slug, "dormant_warn_days": dormant.warn_days,
            "dormant_deactivate_days": dormant.deactivate_days,
            "delete_after_days": dormant.delete_after_days,
            "audit_retention_days": retention, "scim_delete": scim.delete,
            "scim_on_existing": scim.on_existing}


def _show(policy: dict[str, object]) -> None:
    def days(value: object, what: str) -> str:
        return f"after {value} days {what}" if value is not None else "off"
    retention = policy["audit_retention_days"]
    lines = [("dormant warning", days(policy["dormant_warn_days"], "without a sign-in")),
             ("dormant deactivation", days(policy["dormant_deactivate_days"],
                                           "without a sign-in")),
             ("deletion", days(policy["delete_after_days"], "deactivated")),
             ("audit retention", "forever" if retention is None else f"{retention} days"),
             ("SCIM DELETE of a user", str(policy["scim_delete"])),
             ("SCIM POST of a JIT account", str(policy["scim_on_existing"]))]
    typer.echo(f"tenant {policy['tenant']}")
    for label, value in lines:
        typer.echo(f"  {label + ':':<28}{value}")


@tenant_app.command("show")
def tenant_show(slug: str, as_json: JsonOutput = False,
                database_url: DatabaseUrl = None) -> None:
    """Show the tenant's stored policies: lifecycle, audit retention, SCIM."""
    policy = _policy(context_for(database_url), slug)
    if as_json:
        typer.echo(json.dumps(policy))
    else:
        _show(policy)


@tenant_app.command("set-policy")
def tenant_set_policy(slug: str,
                      dormant_warn_days: Annotated[int | None, typer.Option(
                          help="warn after this many days without a sign-in (0: off)")] = None,
                      dormant_deactivate_days: Annotated[int | None, typer.Option(
                          help="deactivate after this many days without a sign-in (0: off)")
                      ] = None,
                      delete_after_days: Annotated[int | None, typer.Option(
                          help="delete accounts deactivated this many days ago (0: off)")
                      ] = None,
                      audit_retention_days: Annotated[int | None, typer.Option(
                          help="keep audit events this many days (0: forever)")] = None,
                      scim_delete: Annotated[str | None, typer.Option(
                          help="SCIM DELETE of a user: deactivate (default) | erase")] = None,
                      scim_on_existing: Annotated[str | None, typer.Option(
                          help="SCIM POST of a JIT account: conflict (default) | adopt")
                      ] = None,
                      clear: Annotated[bool, typer.Option(
                          "--clear", help="turn the lifecycle policy and retention off")
                      ] = False,
                      database_url: DatabaseUrl = None) -> None:
    """Change the tenant's policies: only the options given change, the others stay as they
    are; then print what is stored."""
    lifecycle_given = any(v is not None for v in (dormant_warn_days, dormant_deactivate_days,
                                                  delete_after_days))
    if not (clear or lifecycle_given or audit_retention_days is not None
            or scim_delete is not None or scim_on_existing is not None):
        raise CliError("give a policy option, or --clear")
    if clear and (lifecycle_given or audit_retention_days is not None):
        raise CliError("--clear turns the lifecycle policy and retention off: give it alone "
                       "or with the SCIM options")
    ctx = context_for(database_url)
    if clear:
        lifecycle.set_dormant_policy(ctx, slug, warn_days=None, deactivate_days=None,
                                     delete_after_days=None)
    elif lifecycle_given:
        lifecycle.change_dormant_policy(ctx, slug, warn_days=dormant_warn_days,
                                        deactivate_days=dormant_deactivate_days,
                                        delete_after_days=delete_after_days)
    if clear or audit_retention_days is not None:
        lifecycle.set_audit_retention(ctx, slug, audit_retention_days or None)
    if scim_delete is not None or scim_on_existing is not None:
        scim_tokens.set_scim_policy(ctx, slug, delete=scim_delete, on_existing=scim_on_existing)
    _show(_policy(ctx, slug))


@tenant_app.command("list")
def tenant_list(as_json: JsonOutput = False, database_url: DatabaseUrl = None) -> None:
    """List the tenants."""
    tenants = admin.list_tenants(context_for(database_url))
    print_rows([{"slug": t.slug, "name": t.name} for t in tenants], ["slug", "name"],
               as_json=as_json)


VerifiedBy = Annotated[str | None, typer.Option(
    "--verified-by", help="who checked that the organisation owns the domain (recorded in the "
    "audit log)")]


@tenant_app.command("add-domain")
def tenant_add_domain(slug: str, domain: str,
                      connection: Annotated[str, typer.Option(
                          "--connection", help="the tenant's connection the domain's people "
                          "sign in through")],
                      verified_by: VerifiedBy = None,
                      database_url: DatabaseUrl = None) -> None:
    """Verify an email domain for the tenant (you checked that the organisation owns it: no
    DNS record is read) and send its people to a connection at /sso/discover. Audited as
    domain.verified. A domain another tenant holds is refused."""
    actor = f"cli:{verified_by}" if verified_by else "cli"
    record = discovery.add_domain(context_for(database_url), slug, domain,
                                  connection=connection, actor=actor)
    typer.echo(f"domain {record.domain} verified for tenant {record.tenant_slug}: "
               f"sign-in through {record.connection_slug}")


@tenant_app.command("remove-domain")
def tenant_remove_domain(slug: str, domain: str, database_url: DatabaseUrl = None) -> None:
    """Stop discovering the tenant's email domain (audited as domain.removed)."""
    name = discovery.remove_domain(context_for(database_url), slug, domain, actor="cli")
    typer.echo(f"domain {name} removed from tenant {slug}")


@tenant_app.command("domains")
def tenant_domains(slug: str, as_json: JsonOutput = False,
                   database_url: DatabaseUrl = None) -> None:
    """List the tenant's verified email domains and their connections."""
    records = discovery.list_domains(context_for(database_url), slug)
    print_rows([{"domain": r.domain, "connection": r.connection_slug,
                 "verified_by": r.verified_by, "verified_at": r.verified_at.isoformat()}
                for r in records], ["domain", "connection", "verified_by", "verified_at"],
               as_json=as_json)
