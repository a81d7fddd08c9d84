"""``jitprov connection ...``: register OIDC and SAML identity providers, replace their
mapping, re-read SAML metadata, enable and disable them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli.common import (
    CliError,
    DatabaseUrl,
    JsonOutput,
    context_for,
    print_rows,
    public_settings,
    read_text,
    service_context,
)
from jitprov.core.auth_context import MfaRequirement
from jitprov.jobs import saml_metadata
from jitprov.services import admin
from jitprov.services.login.oidc import (
    backchannel_logout_uri,
    post_logout_redirect_uri,
    scope_warnings,
)
from jitprov.services.login.saml import connection_config

connection_app = typer.Typer(no_args_is_help=True, help="Connections to identity providers.")


@connection_app.command("list")
def connection_list(tenant: Annotated[str | None, typer.Option(
                        help="one tenant (default: all)")] = None,
                    as_json: JsonOutput = False,
                    database_url: DatabaseUrl = None) -> None:
    """Connections with their kind, tenant and state."""
    found = admin.list_connections(context_for(database_url), tenant)
    print_rows([{"slug": c.slug, "kind": c.kind, "tenant": c.tenant_slug,
                 "enabled": c.enabled, "mapping": f"v{c.version} ({c.mapping_source})"}
                for c in found], ["slug", "kind", "tenant", "enabled", "mapping"],
               as_json=as_json)


@connection_app.command("add-oidc")
def connection_add_oidc(
        tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
        slug: Annotated[str, typer.Option("--slug", help="the connection's name in URLs")],
        issuer: Annotated[str, typer.Option("--issuer", help="the provider's issuer URL")],
        client_id: Annotated[str, typer.Option("--client-id", help="the client id at the IdP")],
        client_secret: Annotated[str | None, typer.Option(
            "--client-secret", envvar="JITPROV_OIDC_CLIENT_SECRET",
            help="or set JITPROV_OIDC_CLIENT_SECRET, to keep it out of shell history")] = None,
        mapping: Annotated[Path | None, typer.Option("--mapping", help="mapping YAML")] = None,
        scopes: Annotated[str, typer.Option(
            "--scopes", help="space-separated")] = "openid email profile",
        auth_method: Annotated[str, typer.Option(
            "--auth-method",
            help="client_secret_basic | client_secret_post | private_key_jwt")
        ] = "client_secret_basic",
        userinfo: Annotated[bool, typer.Option(
            "--userinfo", help="merge the userinfo endpoint's claims")] = False,
        entra_multi_tenant: Annotated[bool, typer.Option(
            "--entra-multi-tenant",
            help="issuer is https://login.microsoftonline.com/{tenantid}/v2.0")] = False,
        entra_tenant: Annotated[list[str] | None, typer.Option(
            "--entra-tenant", help="allowed Entra tenant id (repeat)")] = None,
        google_hd: Annotated[list[str] | None, typer.Option(
            "--google-hd", help="allowed Google Workspace domain (repeat)")] = None,
        clock_skew: Annotated[int, typer.Option(
            "--clock-skew", help="seconds of clock skew allowed on exp/iat/nbf")] = 60,
        entra_any_tenant: Annotated[bool, typer.Option(
            "--entra-any-tenant",
            help="with --entra-multi-tenant: accept every Entra tenant")] = False,
        check: Annotated[bool, typer.Option(
            "--check/--no-check", help="fetch the discovery document now")] = True,
        idp_logout: Annotated[bool, typer.Option(
            "--idp-logout/--no-idp-logout",
            help="sign-out also ends the session at the provider (RP-initiated logout)")
        ] = True,
        require_mfa: Annotated[bool, typer.Option(
            "--require-mfa",
            help="refuse a sign-in whose ID token reports no accepted acr/amr value "
                 "(default accepted: amr mfa)")] = False,
        auth_context: Annotated[list[str] | None, typer.Option(
            "--auth-context",
            help="with --require-mfa: an accepted acr or amr value (repeat); acr values are "
                 "requested as acr_values")] = None,
        database_url: DatabaseUrl = None) -> None:
    """Register an OpenID Connect provider (Okta, Entra ID, Google, Keycloak, Auth0...).
    Warns, naming the claim and the rules, when the mapping reads a claim the scopes are
    unlikely to bring."""
    settings = public_settings(database_url)
    config: dict[str, object] = {
        "issuer": issuer, "client_id": client_id, "scopes": scopes.split(),
        "token_auth_method": auth_method, "userinfo": userinfo,
        "entra_multi_tenant": entra_multi_tenant,
        "entra_allowed_tenants": entra_tenant or [], "entra_any_tenant": entra_any_tenant,
        "google_hosted_domains": google_hd or [], "clock_skew_seconds": clock_skew,
        "idp_logout": idp_logout, "require_mfa": require_mfa,
        "accepted_auth_contexts": auth_context or []}
    ctx = service_context(settings)
    try:
        record = admin.add_oidc_connection(
            ctx, tenant=tenant, slug=slug, config=config,
            client_secret=client_secret, mapping=read_text(mapping) if mapping else None,
            mapping_source=str(mapping) if mapping else None, check_provider=check)
        warnings = scope_warnings(ctx, record.slug, discovery="fetch" if check else "none")
    finally:
        ctx.http.close()  # the provider's keep-alive connection
    typer.echo(f"connection {record.slug} (oidc) added to tenant {record.tenant_slug}")
    typer.echo(f"  redirect URI to register at the provider: "
               f"{settings.base_url}/sso/{record.slug}/oidc/callback")
    if auth_method == "private_key_jwt":
        typer.echo(f"  client JWKS URL for the provider: "
                   f"{settings.base_url}/sso/{record.slug}/oidc/jwks.json")
    typer.echo(f"  post-logout redirect URI to register: "
               f"{post_logout_redirect_uri(settings.base_url, record.slug)}")
    typer.echo(f"  back-channel logout URI to register: "
               f"{backchannel_logout_uri(settings.base_url, record.slug)}")
    typer.echo(f"  sign in at: {settings.base_url}/sso/{record.slug}/login")
    _echo_mfa(record.config)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


@connection_app.command("add-saml")
def connection_add_saml(
        tenant: Annotated[str, typer.Option("--tenant", help="tenant slug")],
        slug: Annotated[str, typer.Option("--slug", help="the connection's name in URLs")],
        idp_metadata_url: Annotated[str | None, typer.Option(
            "--idp-metadata-url", help="the IdP's metadata URL (re-read every hour)")] = None,
        idp_metadata_file: Annotated[Path | None, typer.Option(
            "--idp-metadata-file", help="the IdP's metadata XML file")] = None,
        mapping: Annotated[Path | None, typer.Option("--mapping", help="mapping YAML")] = None,
        idp_entity_id: Annotated[str | None, typer.Option(
            "--idp-entity-id", help="pick this IdP out of a metadata aggregate")] = None,
        allow_idp_initiated: Annotated[bool, typer.Option(
            "--allow-idp-initiated", help="accept unsolicited (IdP-initiated) responses")
        ] = False,
        require_signed_assertion: Annotated[bool, typer.Option(
            "--require-signed-assertion",
            help="refuse an Assertion without its own signature, even inside a signed "
                 "Response (the SP metadata then says WantAssertionsSigned)")] = False,
        unsigned_authn_requests: Annotated[bool, typer.Option(
            "--unsigned-authn-requests",
            help="sign AuthnRequests only when the IdP metadata asks for it "
                 "(WantAuthnRequestsSigned); the SP metadata then says "
                 "AuthnRequestsSigned=\"false\". Saves an RSA signature per login start")
        ] = False,
        require_mfa: Annotated[bool, typer.Option(
            "--require-mfa",
            help="refuse an assertion whose AuthnContextClassRef is not an --auth-context "
                 "value; they are requested (RequestedAuthnContext exact)")] = False,
        auth_context: Annotated[list[str] | None, typer.Option(
            "--auth-context",
            help="with --require-mfa: an accepted AuthnContextClassRef URI (repeat; at "
                 "least one)")] = None,
        database_url: DatabaseUrl = None) -> None:
    """Register a SAML 2.0 IdP from its metadata; prints what to give the IdP."""
    if (idp_metadata_url is None) == (idp_metadata_file is None):
        raise CliError("give exactly one of --idp-metadata-url or --idp-metadata-file")
    settings = public_settings(database_url)
    xml: bytes | None = None
    if idp_metadata_file is not None:
        try:
            xml = idp_metadata_file.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {idp_metadata_file}: {exc}") from exc
    record = admin.add_saml_connection(
        service_context(settings), tenant=tenant, slug=slug, metadata_xml=xml,
        metadata_url=idp_metadata_url, mapping=read_text(mapping) if mapping else None,
        mapping_source=str(mapping) if mapping else None, entity_id=idp_entity_id,
        options={"allow_idp_initiated": allow_idp_initiated,
                 "require_signed_assertion": require_signed_assertion,
                 "sign_authn_requests": not unsigned_authn_requests,
                 "require_mfa": require_mfa, "accepted_auth_contexts": auth_context or []})
    base = f"{settings.base_url}/sso/{record.slug}"
    typer.echo(f"connection {record.slug} (saml) added to tenant {record.tenant_slug}: IdP "
               f"{record.config.get('idp_entity_id')}")
    typer.echo("  give the IdP (or let it read the SP metadata URL):")
    typer.echo(f"    SP metadata URL:           {base}/saml/metadata")
    typer.echo(f"    SP entity id (audience):   {base}/saml/metadata")
    typer.echo(f"    ACS URL (HTTP-POST):       {base}/saml/acs")
    typer.echo(f"  sign in at: {base}/login")
    config = connection_config(record)
    if not config.sign_authn_requests:
        typer.echo("  AuthnRequests: signed, as the IdP metadata asks"
                   if config.signs_authn_requests else
                   "  AuthnRequests: unsigned (the SP metadata says AuthnRequestsSigned=false)")
    _echo_mfa(record.config)


def _echo_mfa(config: Mapping[str, object]) -> None:
    requirement = MfaRequirement.of(config)
    if requirement is not None:
        typer.echo(f"  multi-factor authentication required; accepted: "
                   f"{' '.join(requirement.accepted)}")


@connection_app.command("refresh-metadata")
def connection_refresh_metadata(slug: str, database_url: DatabaseUrl = None) -> None:
    """Re-read a SAML connection's IdP metadata URL now (serve does it every hour)."""
    report = saml_metadata.refresh_connection(context_for(database_url), slug,
                                              actor="cli")
    if report.outcome in ("failed", "skipped"):
        raise CliError(f"connection {slug}: metadata refresh {report.outcome}: "
                       f"{report.detail}")
    version = f" (version {report.version})" if report.version is not None else ""
    typer.echo(f"connection {slug}: IdP metadata {report.outcome}{version}")


@connection_app.command("set-mapping")
def connection_set_mapping(
        mapping: Annotated[Path, typer.Argument(help="the mapping YAML file")],
        connection: Annotated[str, typer.Option("--connection", help="connection slug")],
        database_url: DatabaseUrl = None) -> None:
    """Replace a connection's mapping; running servers use it at their next login."""
    version = admin.set_mapping(context_for(database_url), connection, read_text(mapping),
                                str(mapping))
    typer.echo(f"connection {connection}: mapping {mapping} in force (version {version})")


@connection_app.command("disable")
def connection_disable(slug: str, database_url: DatabaseUrl = None) -> None:
    """Refuse new sign-ins through a connection (existing sessions stay)."""
    admin.set_connection_enabled(context_for(database_url), slug, enabled=False)
    typer.echo(f"connection {slug} disabled")


@connection_app.command("enable")
def connection_enable(slug: str, database_url: DatabaseUrl = None) -> None:
    """Enable a connection: its login URL works again."""
    admin.set_connection_enabled(context_for(database_url), slug, enabled=True)
    typer.echo(f"connection {slug} enabled")
