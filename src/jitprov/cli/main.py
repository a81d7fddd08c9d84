"""``jitprov``: typer commands over the services.

Every command finds the database through ``--database-url`` or ``JITPROV_DATABASE_URL``
(default: the embedded SQLite file ``var/jitprov.db``). Errors are one line on stderr and exit
code 2; ``audit verify`` exits 1 when a chain is broken.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from jitprov.cli import mapping_preview
from jitprov.cli.admin_console import admin_console_app
from jitprov.cli.frontline import device_app, passkey_app
from jitprov.cli.scim import scim_app
from jitprov.core.errors import JitprovError
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import load_policy
from jitprov.services import (
    admin,
    approvals,
    audit_export,
    break_glass,
    lifecycle,
    scim_tokens,
    webhooks,
)
from jitprov.services.context import ServiceContext, build_context
from jitprov.services.identity_tokens import rotate_keys
from jitprov.services.login import dry_run_login
from jitprov.settings import Settings, SettingsError, load_settings
from jitprov.store.database import Database

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  help="jitprov: Just-in-Time user provisioning.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants.")
connection_app = typer.Typer(no_args_is_help=True, help="Connections to identity providers.")
mapping_app = typer.Typer(no_args_is_help=True, help="Mapping files.")
users_app = typer.Typer(no_args_is_help=True, help="Accounts.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
token_app = typer.Typer(no_args_is_help=True, help="Admin API bearer tokens.")
approvals_app = typer.Typer(no_args_is_help=True, help="Roles waiting for approval.")
keys_app = typer.Typer(no_args_is_help=True, help="Keys that sign identity tokens for apps.")
webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook endpoints and deliveries.")
lifecycle_app = typer.Typer(no_args_is_help=True, help="Dormant accounts.")
break_glass_app = typer.Typer(no_args_is_help=True,
                              help="Emergency access (two admins, one use).")
for sub, name in ((token_app, "admin-token"), (approvals_app, "approvals"), (db_app, "db"),
                  (tenant_app, "tenant"), (connection_app, "connection"),
                  (mapping_app, "mapping"), (users_app, "users"), (audit_app, "audit"),
                  (keys_app, "keys"), (webhooks_app, "webhooks"),
                  (lifecycle_app, "lifecycle"), (break_glass_app, "break-glass")):
    app.add_typer(sub, name=name)
app.add_typer(scim_app, name="scim-token")
mapping_preview.register(mapping_app)

app.add_typer(device_app, name="device")
app.add_typer(passkey_app, name="passkey")
app.add_typer(admin_console_app, name="admin")

DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="JITPROV_DATABASE_URL",
    help="sqlite:///path or postgresql://user@host/db (default: sqlite:///var/jitprov.db)")]


class CliError(JitprovError):
    code = "cli_error"


def _settings(database_url: str | None, *, dev_mode: bool = False) -> Settings:
    settings = load_settings(dev_mode=dev_mode)
    return settings.with_overrides(database_url=database_url) if database_url else settings


_OPENED: list[Database] = []  # disposed when the command ends (see main)


def _database(url: str) -> Database:
    db = Database.connect(url, pool_size=2)
    _OPENED.append(db)
    return db


def _context(settings: Settings, *, migrated: bool = True) -> ServiceContext:
    db = _database(settings.database_url)
    if migrated:
        db.require_current()
    return build_context(settings, db)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc


# -- db ---------------------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Create or migrate the schema to the newest version."""
    db = _database(_settings(database_url).database_url)
    before, after = db.upgrade()
    typer.echo(f"database {db.safe_url}: schema {before or 'empty'} -> {after}")


# -- tenant -----------------------------------------------------------------------------------

@tenant_app.command("create")
def tenant_create(slug: str, name: Annotated[str | None, typer.Option()] = None,
                  database_url: DatabaseUrl = None) -> None:
    """Create a tenant."""
    tenant = admin.create_tenant(_context(_settings(database_url)), slug, name)
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
    ctx = _context(_settings(database_url))
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
    for t in admin.list_tenants(_context(_settings(database_url))):
        typer.echo(f"{t.slug}\t{t.name}")


# -- connection -------------------------------------------------------------------------------

@connection_app.command("list")
def connection_list(tenant: Annotated[str | None, typer.Option()] = None,
                    database_url: DatabaseUrl = None) -> None:
    """Connections with their kind, tenant and state."""
    for c in admin.list_connections(_context(_settings(database_url)), tenant):
        state = "enabled" if c.enabled else "disabled"
        typer.echo(f"{c.slug}\t{c.kind}\t{c.tenant_slug}\t{state}\tmapping v{c.version} "
                   f"({c.mapping_source})")


@connection_app.command("add-oidc")
def connection_add_oidc(
        tenant: Annotated[str, typer.Option("--tenant")],
        slug: Annotated[str, typer.Option("--slug")],
        issuer: Annotated[str, typer.Option("--issuer", help="the provider's issuer URL")],
        client_id: Annotated[str, typer.Option("--client-id")],
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
        database_url: DatabaseUrl = None) -> None:
    """Register an OpenID Connect provider (Okta, Entra ID, Google, Keycloak, Auth0...)."""
    settings = _settings(database_url)
    config: dict[str, object] = {
        "issuer": issuer, "client_id": client_id, "scopes": scopes.split(),
        "token_auth_method": auth_method, "userinfo": userinfo,
        "entra_multi_tenant": entra_multi_tenant,
        "entra_allowed_tenants": entra_tenant or [], "entra_any_tenant": entra_any_tenant,
        "google_hosted_domains": google_hd or [], "clock_skew_seconds": clock_skew}
    record = admin.add_oidc_connection(
        _context(settings), tenant=tenant, slug=slug, config=config,
        client_secret=client_secret, mapping=_read(mapping) if mapping else None,
        mapping_source=str(mapping) if mapping else None, check_provider=check)
    typer.echo(f"connection {record.slug} (oidc) added to tenant {record.tenant_slug}")
    typer.echo(f"  redirect URI to register at the provider: "
               f"{settings.base_url}/sso/{record.slug}/oidc/callback")
    if auth_method == "private_key_jwt":
        typer.echo(f"  client JWKS URL for the provider: "
                   f"{settings.base_url}/sso/{record.slug}/oidc/jwks.json")
    typer.echo(f"  sign in at: {settings.base_url}/sso/{record.slug}/login")


@connection_app.command("add-saml")
def connection_add_saml(
        tenant: Annotated[str, typer.Option("--tenant")],
        slug: Annotated[str, typer.Option("--slug")],
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
        database_url: DatabaseUrl = None) -> None:
    """Register a SAML 2.0 IdP from its metadata; prints what to give the IdP."""
    if (idp_metadata_url is None) == (idp_metadata_file is None):
        raise CliError("give exactly one of --idp-metadata-url or --idp-metadata-file")
    settings = _settings(database_url)
    xml: bytes | None = None
    if idp_metadata_file is not None:
        try:
            xml = idp_metadata_file.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {idp_metadata_file}: {exc}") from exc
    record = admin.add_saml_connection(
        _context(settings), tenant=tenant, slug=slug, metadata_xml=xml,
        metadata_url=idp_metadata_url, mapping=_read(mapping) if mapping else None,
        mapping_source=str(mapping) if mapping else None, entity_id=idp_entity_id,
        options={"allow_idp_initiated": allow_idp_initiated})
    base = f"{settings.base_url}/sso/{record.slug}"
    typer.echo(f"connection {record.slug} (saml) added to tenant {record.tenant_slug}: IdP "
               f"{record.config.get('idp_entity_id')}")
    typer.echo("  give the IdP (or let it read the SP metadata URL):")
    typer.echo(f"    SP metadata URL:           {base}/saml/metadata")
    typer.echo(f"    SP entity id (audience):   {base}/saml/metadata")
    typer.echo(f"    ACS URL (HTTP-POST):       {base}/saml/acs")
    typer.echo(f"  sign in at: {base}/login")


@connection_app.command("refresh-metadata")
def connection_refresh_metadata(slug: str, database_url: DatabaseUrl = None) -> None:
    """Re-read a SAML connection's IdP metadata URL now (serve does it every hour)."""
    from jitprov.jobs import saml_metadata  # here: keeps this command's edit in one place

    report = saml_metadata.refresh_connection(_context(_settings(database_url)), slug,
                                              actor="cli")
    if report.outcome in ("failed", "skipped"):
        raise CliError(f"connection {slug}: metadata refresh {report.outcome}: "
                       f"{report.detail}")
    version = f" (version {report.version})" if report.version is not None else ""
    typer.echo(f"connection {slug}: IdP metadata {report.outcome}{version}")


@connection_app.command("set-mapping")
def connection_set_mapping(
        mapping: Annotated[Path, typer.Argument(help="the mapping YAML file")],
        connection: Annotated[str, typer.Option("--connection")],
        database_url: DatabaseUrl = None) -> None:
    """Replace a connection's mapping; running servers use it at their next login."""
    version = admin.set_mapping(_context(_settings(database_url)), connection, _read(mapping),
                                str(mapping))
    typer.echo(f"connection {connection}: mapping {mapping} in force (version {version})")


@connection_app.command("disable")
def connection_disable(slug: str, database_url: DatabaseUrl = None) -> None:
    """Refuse new sign-ins through a connection (existing sessions stay)."""
    admin.set_connection_enabled(_context(_settings(database_url)), slug, enabled=False)
    typer.echo(f"connection {slug} disabled")


@connection_app.command("enable")
def connection_enable(slug: str, database_url: DatabaseUrl = None) -> None:
    admin.set_connection_enabled(_context(_settings(database_url)), slug, enabled=True)
    typer.echo(f"connection {slug} enabled")


# -- mapping ----------------------------------------------------------------------------------

@mapping_app.command("check")
def mapping_check(mapping: Annotated[Path, typer.Argument(help="the mapping YAML file")]) -> None:
    """Validate a mapping file; errors name the file, line and rule."""
    policy = load_policy(_read(mapping), str(mapping))
    typer.echo(f"{mapping}: ok ({policy.summary})")


@mapping_app.command("test")
def mapping_test(connection: Annotated[str, typer.Option("--connection")],
                 claims: Annotated[Path, typer.Option("--claims", help="JSON object of claims")],
                 subject: Annotated[str | None, typer.Option(
                     help="the IdP subject (default: the claims' sub)")] = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False,
                 database_url: DatabaseUrl = None) -> None:
    """Dry run: the decision and rule trace a login with these claims would get. Writes
    nothing."""
    text = _read(claims)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{claims}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise CliError(f"{claims}: the claims must be one JSON object")
    sub = subject or data.get("sub")
    if not isinstance(sub, str) or not sub:
        raise CliError(f"{claims}: no subject: give --subject or a string 'sub' claim")
    result = dry_run_login(_context(_settings(database_url)), connection,
                           ExternalIdentity(issuer="dry-run", subject=sub, claims=data))
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
    typer.echo("(dry run: nothing was written)")


# -- users ------------------------------------------------------------------------------------

@users_app.command("list")
def users_list(tenant: Annotated[str, typer.Option("--tenant")],
               as_json: Annotated[bool, typer.Option("--json")] = False,
               database_url: DatabaseUrl = None) -> None:
    """Accounts of a tenant with their roles and provenance."""
    views = admin.list_accounts(_context(_settings(database_url)), tenant)
    if as_json:
        typer.echo(json.dumps([{
            "id": v.account.id, "status": v.account.status, "email": v.account.email,
            "name": v.account.profile.get("name"), "roles": sorted(v.account.roles),
            "grants": [{"role": g.role, "source": g.source} for g in sorted(v.account.grants)],
            "groups": sorted(v.account.groups), "provisioned_by": v.account.provisioned_by,
            "identities": [{"connection": i.connection, "subject": i.subject}
                           for i in v.identities],
            "created_at": v.created_at.isoformat(),
            "last_login_at": v.last_login_at.isoformat() if v.last_login_at else None,
        } for v in views], indent=2))
        return
    if not views:
        typer.echo(f"tenant {tenant} has no accounts yet")
    for v in views:
        roles = ",".join(sorted(v.account.roles)) or "-"
        last = v.last_login_at.isoformat(timespec="seconds") if v.last_login_at else "never"
        typer.echo(f"{v.account.id}\t{v.account.status}\t{v.account.email or '-'}\t{roles}\t"
                   f"{v.account.provisioned_by}\tlast login {last}")


@users_app.command("deactivate")
def users_deactivate(account_id: str, reason: Annotated[str, typer.Option("--reason")],
                     database_url: DatabaseUrl = None) -> None:
    """Deactivate an account: its sessions end now, and logins are refused until reactivated."""
    change = admin.set_account_status(_context(_settings(database_url)), account_id,
                                      "deactivated", reason=reason)
    typer.echo(f"account {account_id} deactivated; {change.sessions_revoked} session(s) "
               "revoked")


@users_app.command("reactivate")
def users_reactivate(account_id: str, reason: Annotated[str, typer.Option("--reason")],
                     database_url: DatabaseUrl = None) -> None:
    """Reactivate a deactivated or suspended account (explicit and audited)."""
    admin.set_account_status(_context(_settings(database_url)), account_id, "active",
                             reason=reason)
    typer.echo(f"account {account_id} reactivated")


# -- approvals --------------------------------------------------------------------------------

@approvals_app.command("list")
def approvals_list(tenant: Annotated[str, typer.Option("--tenant")],
                   database_url: DatabaseUrl = None) -> None:
    """Roles waiting for an approver, oldest first."""
    requests = approvals.list_requests(_context(_settings(database_url)), tenant)
    if not requests:
        typer.echo(f"tenant {tenant}: nothing waits for approval")
    for r in requests:
        typer.echo(f"{r.id}\t{r.role}\t{r.email or r.account_id}\trequested by {r.source}\t"
                   f"{r.requested_at.isoformat(timespec='seconds')}")


@approvals_app.command("approve")
def approvals_approve(request_id: int, reason: Annotated[str, typer.Option("--reason")],
                      approver: Annotated[str, typer.Option(
                          "--approver", help="who approves (recorded in the audit log)")],
                      valid_days: Annotated[int | None, typer.Option(
                          min=1, max=3650,
                          help="time-bound access: the grant expires after")] = None,
                      database_url: DatabaseUrl = None) -> None:
    """Grant a requested role (source: approval; rules never revoke it)."""
    decision = approvals.decide_request(
        _context(_settings(database_url)), request_id, approve=True, reason=reason,
        approver=f"cli:{approver}",
        valid_for=timedelta(days=valid_days) if valid_days else None)
    until = f" until {decision.expires_at.isoformat(timespec='seconds')}" \
        if decision.expires_at else ""
    typer.echo(f"request {request_id}: {decision.request.role} granted to "
               f"{decision.request.email or decision.request.account_id}{until}")


@approvals_app.command("deny")
def approvals_deny(request_id: int, reason: Annotated[str, typer.Option("--reason")],
                   approver: Annotated[str, typer.Option("--approver")],
                   database_url: DatabaseUrl = None) -> None:
    decision = approvals.decide_request(_context(_settings(database_url)), request_id,
                                        approve=False, reason=reason,
                                        approver=f"cli:{approver}")
    typer.echo(f"request {request_id}: {decision.request.role} denied")


# -- keys -------------------------------------------------------------------------------------

@keys_app.command("rotate")
def keys_rotate(overlap_hours: Annotated[int, typer.Option(
                    min=0, help="how long the previous key stays published")] = 24,
                database_url: DatabaseUrl = None) -> None:
    """Make a new signing key; tokens signed by the previous one verify during the overlap."""
    kid = rotate_keys(_context(_settings(database_url)),
                      overlap=timedelta(hours=overlap_hours))
    typer.echo(f"signing key {kid} active; the next key is published ahead of its use; "
               f"previous keys stay published for {overlap_hours} h")


# -- webhooks ---------------------------------------------------------------------------------

@webhooks_app.command("add")
def webhooks_add(tenant: Annotated[str, typer.Option("--tenant")],
                 url: Annotated[str, typer.Option("--url")],
                 events: Annotated[str, typer.Option(
                     "--events", help="comma-separated event types, or *")] = "*",
                 database_url: DatabaseUrl = None) -> None:
    """Subscribe an endpoint; prints its signing secret once (Standard Webhooks)."""
    created = webhooks.add_endpoint(_context(_settings(database_url)), tenant, url,
                                    events.split(","))
    typer.echo(f"webhook endpoint {created.id} added; signing secret (shown once):")
    typer.echo(created.secret)


@webhooks_app.command("list")
def webhooks_list(tenant: Annotated[str, typer.Option("--tenant")],
                  database_url: DatabaseUrl = None) -> None:
    for e in webhooks.list_endpoints(_context(_settings(database_url)), tenant):
        state = "enabled" if e.enabled else "disabled"
        typer.echo(f"{e.id}\t{e.url}\t{','.join(e.event_types)}\t{state}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(tenant: Annotated[str, typer.Option("--tenant")],
                        status: Annotated[str | None, typer.Option(
                            help="pending | delivered | dead")] = None,
                        database_url: DatabaseUrl = None) -> None:
    """The delivery log, newest first."""
    for d in webhooks.list_deliveries(_context(_settings(database_url)), tenant,
                                      status=status):
        detail = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "")
        typer.echo(f"{d.id}\t{d.event_type}\t{d.status}\tattempts {d.attempts}\t{detail}")


@webhooks_app.command("replay")
def webhooks_replay(delivery_id: int, database_url: DatabaseUrl = None) -> None:
    """Send a (dead-lettered) delivery again."""
    webhooks.replay(_context(_settings(database_url)), delivery_id)
    typer.echo(f"delivery {delivery_id} queued again")


@webhooks_app.command("deliver")
def webhooks_deliver(database_url: DatabaseUrl = None) -> None:
    """Run one worker pass now (serve does this every second)."""
    report = webhooks.deliver_due(_context(_settings(database_url)))
    typer.echo(f"{report.dispatched} event(s) dispatched, {report.delivered} delivered, "
               f"{report.failed} failed")


@app.command("access-review")
def access_review_cmd(tenant: Annotated[str, typer.Option("--tenant")],
                      fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
                      database_url: DatabaseUrl = None) -> None:
    """Who holds which role, its provenance, when granted, last sign-in (for auditors)."""
    if fmt not in ("csv", "json"):
        raise CliError(f"--format must be csv or json, not {fmt!r}")
    sys.stdout.write(audit_export.access_review(_context(_settings(database_url)), tenant, fmt))


@lifecycle_app.command("sweep")
def lifecycle_sweep(tenant: Annotated[str | None, typer.Option()] = None,
                    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
                    database_url: DatabaseUrl = None) -> None:
    """Warn and deactivate dormant accounts per tenant policy (--dry-run: only print)."""
    verb = "would" if dry_run else "did"
    for r in lifecycle.sweep(_context(_settings(database_url)), tenant, dry_run=dry_run):
        if not r.policy.enabled:
            typer.echo(f"tenant {r.tenant}: no dormant-account policy")
            continue
        if r.skipped:
            typer.echo(f"tenant {r.tenant}: another node is sweeping it")
            continue
        typer.echo(f"tenant {r.tenant}: {verb} deactivate {len(r.deactivated)}, warn "
                   f"{len(r.warned)}, delete {len(r.deleted)}; {len(r.never_signed_in)} never "
                   "signed in (not touched)")
        for label, items in (("deactivate", r.deactivated), ("warn", r.warned),
                             ("delete", r.deleted),
                             ("never signed in", r.never_signed_in)):
            for item in items:
                typer.echo(f"  {label}: {item}")


@break_glass_app.command("request")
def break_glass_request(tenant: Annotated[str, typer.Option("--tenant")],
                        roles: Annotated[str, typer.Option("--roles",
                                                           help="comma-separated")],
                        reason: Annotated[str, typer.Option("--reason")],
                        requested_by: Annotated[str, typer.Option("--requested-by")],
                        valid_minutes: Annotated[int, typer.Option()] = 60,
                        database_url: DatabaseUrl = None) -> None:
    """First admin: ask for emergency access (a second admin must approve)."""
    request_id = break_glass.request_access(
        _context(_settings(database_url)), tenant, roles=roles.split(","), reason=reason,
        requested_by=f"cli:{requested_by}", valid_minutes=valid_minutes)
    typer.echo(f"break-glass request {request_id} waits for a second admin: "
               f"jitprov break-glass approve {request_id} --approved-by NAME")


@break_glass_app.command("approve")
def break_glass_approve(request_id: int,
                        approved_by: Annotated[str, typer.Option("--approved-by")],
                        database_url: DatabaseUrl = None) -> None:
    """Second admin: issue the single-use code (shown once)."""
    issued = break_glass.approve_access(_context(_settings(database_url)), request_id,
                                        approved_by=f"cli:{approved_by}")
    typer.echo(f"emergency code (single use, until "
               f"{issued.expires_at.isoformat(timespec='minutes')}); enter it at /break-glass:")
    typer.echo(issued.code)


# -- audit ------------------------------------------------------------------------------------

@audit_app.command("export")
def audit_export_cmd(fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
                     tenant: Annotated[str | None, typer.Option()] = None,
                     output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
                     database_url: DatabaseUrl = None) -> None:
    """Write the audit log as JSONL or CSV (stdout unless --output)."""
    if fmt not in ("jsonl", "csv"):
        raise CliError(f"--format must be jsonl or csv, not {fmt!r}")
    ctx = _context(_settings(database_url))
    lines = audit_export.export_lines(ctx, fmt, tenant)
    if output is None:
        for line in lines:
            sys.stdout.write(line)
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as fh:
            fh.writelines(lines)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc}") from exc


@audit_app.command("verify")
def audit_verify(tenant: Annotated[str | None, typer.Option()] = None,
                 database_url: DatabaseUrl = None) -> None:
    """Check the hash chains: an edited, deleted or reordered event is reported (exit 1)."""
    reports = audit_export.verify(_context(_settings(database_url)), tenant)
    broken = False
    for r in reports:
        if r.intact:
            typer.echo(f"tenant {r.tenant}: {r.events} events, chain intact")
        else:
            broken = True
            for p in r.problems:
                typer.echo(f"tenant {r.tenant}: BROKEN: {p}")
    if broken:
        raise typer.Exit(1)


# -- admin tokens -----------------------------------------------------------------------------

@token_app.command("create")
def admin_token_create(name: Annotated[str, typer.Option("--name")],
                       expires_days: Annotated[int | None, typer.Option(min=1)] = None,
                       database_url: DatabaseUrl = None) -> None:
    """Issue an admin API token. It is shown once; only its hash is stored."""
    token_id, token = admin.create_admin_token(
        _context(_settings(database_url)), name,
        expires_in=timedelta(days=expires_days) if expires_days else None)
    typer.echo(f"admin token {token_id} ({name}); shown once, keep it safe:")
    typer.echo(token)


@token_app.command("list")
def admin_token_list(database_url: DatabaseUrl = None) -> None:
    for token_id, name, created, expires, revoked in admin.list_admin_tokens(
            _context(_settings(database_url))):
        state = "revoked" if revoked else "active"
        until = f" until {expires.isoformat(timespec='seconds')}" if expires else ""
        typer.echo(f"{token_id}\t{name}\t{state}{until}\tcreated "
                   f"{created.isoformat(timespec='seconds')}")


@token_app.command("revoke")
def admin_token_revoke(token_id: int, database_url: DatabaseUrl = None) -> None:
    admin.revoke_admin_token(_context(_settings(database_url)), token_id)
    typer.echo(f"admin token {token_id} revoked")


# -- servers ----------------------------------------------------------------------------------

@app.command("serve")
def serve(host: Annotated[str, typer.Option()] = "127.0.0.1",
          port: Annotated[int, typer.Option()] = 8000,
          workers: Annotated[int, typer.Option(
              min=1, max=64, help="worker processes (each with its own database pool)")] = 1,
          database_url: DatabaseUrl = None) -> None:
    """Run the server (production). Refuses dev-only connection kinds."""
    from jitprov.cli.servers import run_serve

    run_serve(_settings(database_url), host=host, port=port, workers=workers)


@app.command("dev")
def dev(host: Annotated[str, typer.Option()] = "127.0.0.1",
        port: Annotated[int, typer.Option()] = 8000,
        database_url: DatabaseUrl = None) -> None:
    """Embedded demo: migrates the SQLite database, adds a demo tenant and IdP, serves."""
    from jitprov.cli.servers import run_dev

    run_dev(_settings(database_url, dev_mode=True), host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    """The console script. Exits 0, 1 (``audit verify`` found a broken chain) or 2 (error)."""
    try:
        app(args=argv, prog_name="jitprov")
    except (JitprovError, SettingsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        while _OPENED:
            _OPENED.pop().dispose()
