"""The admin API's configuration and credential routes: tenant policies, one account, SCIM
tokens, connection switches and metadata refresh, signing-key rotation, the lifecycle sweep,
the webhook catalogue and a worker pass, audit search and console session revocation.

With ``admin_api`` they give every CLI command that reads or changes state a route (a test
walks the CLI's command tree against them); the commands kept local are listed there with
their reason.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from jitprov.core.events import WEBHOOK_EVENTS
from jitprov.jobs import saml_metadata
from jitprov.services import (
    admin,
    audit_export,
    config_file,
    console,
    lifecycle,
    mapping_preview,
    webhooks,
)
from jitprov.services.identity_tokens import rotate_keys
from jitprov.services.records import AuditFilter
from jitprov.services.scim import tokens as scim_tokens
from jitprov.web.routes.admin_api import Admin, _account_json
from jitprov.web.routes.common import ctx_of

router = APIRouter(prefix="/api", tags=["admin"])


def _policy_json(request: Request, tenant: str) -> dict[str, object]:
    ctx = ctx_of(request)
    dormant, retention = lifecycle.lifecycle_policy(ctx, tenant)
    scim = scim_tokens.get_scim_policy(ctx, tenant)
    return {"tenant": tenant, "dormant_warn_days": dormant.warn_days,
            "dormant_deactivate_days": dormant.deactivate_days,
            "delete_after_days": dormant.delete_after_days,
            "audit_retention_days": retention, "scim_delete": scim.delete,
            "scim_on_existing": scim.on_existing,
            "claims_retention_days": mapping_preview.claims_retention_days(ctx, tenant)}


class PolicyIn(BaseModel):
    """Only the fields given change; for the three lifecycle days ``0`` turns one off."""

    dormant_warn_days: int | None = Field(None, ge=0, le=lifecycle.MAX_POLICY_DAYS)
    dormant_deactivate_days: int | None = Field(None, ge=0, le=lifecycle.MAX_POLICY_DAYS)
    delete_after_days: int | None = Field(None, ge=0, le=lifecycle.MAX_POLICY_DAYS)
    audit_retention_days: int | None = Field(
        None, ge=0, le=lifecycle.MAX_POLICY_DAYS, description="0: keep events forever")
    scim_delete: Literal["deactivate", "erase"] | None = None
    scim_on_existing: Literal["conflict", "adopt"] | None = None
    claims_retention_days: int | None = Field(
        None, ge=0, le=mapping_preview.MAX_CLAIMS_RETENTION_DAYS,
        description="days each identity's last login claims are kept (for previews)")


@router.get("/tenants/{tenant}/policy")
def get_policy(request: Request, tenant: str, _: Admin) -> dict[str, object]:
    """The tenant's stored policies: lifecycle, audit retention, SCIM, recorded claims."""
    return _policy_json(request, tenant)


@router.patch("/tenants/{tenant}/policy")
def change_policy(request: Request, tenant: str, body: PolicyIn,
                  who: Admin) -> dict[str, object]:
    """Change the fields given, keep the others (as `jitprov tenant set-policy`)."""
    ctx, given = ctx_of(request), body.model_dump(exclude_unset=True)
    if any(given.get(k) is not None for k in ("dormant_warn_days", "dormant_deactivate_days",
                                              "delete_after_days")):
        lifecycle.change_dormant_policy(ctx, tenant, warn_days=body.dormant_warn_days,
                                        deactivate_days=body.dormant_deactivate_days,
                                        delete_after_days=body.delete_after_days,
                                        actor=who.actor)
    if body.audit_retention_days is not None:
        lifecycle.set_audit_retention(ctx, tenant, body.audit_retention_days or None,
                                      actor=who.actor)
    if body.scim_delete is not None or body.scim_on_existing is not None:
        scim_tokens.set_scim_policy(ctx, tenant, delete=body.scim_delete,
                                    on_existing=body.scim_on_existing, actor=who.actor)
    if body.claims_retention_days is not None:
        mapping_preview.set_claims_retention(ctx, tenant, body.claims_retention_days,
                                             actor=who.actor)
    return _policy_json(request, tenant)


@router.get("/accounts/{account_id}")
def get_account(request: Request, account_id: str, _: Admin) -> dict[str, object]:
    """One account: profile, roles with their grants, pending roles, groups, identities."""
    return _account_json(admin.get_account(ctx_of(request), account_id))


class ScimTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["entra"])
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    connection: str | None = Field(None, description="the connection whose identities the "
                                   "token's users link to (default: none)")


@router.get("/tenants/{tenant}/scim-tokens")
def list_scim_tokens(request: Request, tenant: str, _: Admin) -> list[dict[str, object]]:
    """The tenant's SCIM tokens, never the tokens themselves."""
    def when(moment: object) -> str | None:
        return moment.isoformat() if moment is not None else None  # type: ignore[attr-defined]
    return [{"id": t.id, "name": t.name, "revoked": t.revoked_at is not None,
             "expires_at": when(t.expires_at), "created_at": when(t.created_at),
             "last_used_at": when(t.last_used_at)}
            for t in scim_tokens.list_tokens(ctx_of(request), tenant)]


@router.post("/tenants/{tenant}/scim-tokens", status_code=201)
def create_scim_token(request: Request, tenant: str, body: ScimTokenIn,
                      who: Admin) -> dict[str, object]:
    """The token is in this answer only (its hash is stored)."""
    token_id, token = scim_tokens.create_token(
        ctx_of(request), tenant, body.name, connection=body.connection, actor=who.actor,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None)
    return {"id": token_id, "token": token}


@router.delete("/tenants/{tenant}/scim-tokens/{token_id}")
def revoke_scim_token(request: Request, tenant: str, token_id: int,
                      who: Admin) -> dict[str, object]:
    """Revoke: the next request with it is 401 (within 2 seconds on other nodes)."""
    scim_tokens.revoke_token(ctx_of(request), tenant, token_id, actor=who.actor)
    return {"id": token_id, "revoked": True}


class EnabledIn(BaseModel):
    enabled: bool


@router.put("/connections/{connection}/enabled")
def set_connection_enabled(request: Request, connection: str, body: EnabledIn,
                           who: Admin) -> dict[str, object]:
    """Enable or disable sign-in through a connection (`jitprov connection enable|disable`)."""
    admin.set_connection_enabled(ctx_of(request), connection, enabled=body.enabled,
                                 actor=who.actor)
    return {"connection": connection, "enabled": body.enabled}


@router.post("/connections/{connection}/refresh-metadata")
def refresh_metadata(request: Request, connection: str, who: Admin) -> dict[str, object]:
    """Re-read a SAML IdP's metadata URL now; a failure keeps the configuration in use."""
    report = saml_metadata.refresh_connection(ctx_of(request), connection, actor=who.actor)
    return {"connection": connection, "outcome": report.outcome, "detail": report.detail}


class RotateIn(BaseModel):
    overlap_hours: int = Field(24, ge=0, le=24 * 366)


@router.post("/keys/rotate")
def rotate_signing_keys(request: Request, body: RotateIn, _: Admin) -> dict[str, object]:
    """A new identity-token signing key; the previous one stays published for the overlap."""
    kid = rotate_keys(ctx_of(request), overlap=timedelta(hours=body.overlap_hours))
    return {"active_kid": kid, "overlap_hours": body.overlap_hours}


class SweepIn(BaseModel):
    tenant: str | None = None
    dry_run: bool = False


@router.post("/lifecycle/sweep")
def sweep(request: Request, body: SweepIn, _: Admin) -> list[dict[str, object]]:
    """Warn and deactivate dormant accounts per tenant policy now (``dry_run``: only say)."""
    return [{"tenant": r.tenant, "dry_run": r.dry_run, "skipped": r.skipped,
             "warned": r.warned, "deactivated": r.deactivated, "deleted": r.deleted,
             "never_signed_in": len(r.never_signed_in), "audit_pruned": r.audit_pruned}
            for r in lifecycle.sweep(ctx_of(request), body.tenant, dry_run=body.dry_run)]


@router.get("/webhook-events")
def webhook_events(_: Admin) -> list[dict[str, str]]:
    """The event types a webhook endpoint can subscribe to."""
    return [{"event": name, "when": when} for name, when in WEBHOOK_EVENTS.items()]


@router.post("/webhooks/deliver")
def deliver_webhooks(request: Request, _: Admin) -> dict[str, int]:
    """Run one delivery pass now (`serve` runs one every second)."""
    report = webhooks.deliver_due(ctx_of(request))
    return {"dispatched": report.dispatched, "delivered": report.delivered,
            "failed": report.failed}


@router.get("/audit/search")
def search_audit(request: Request, _: Admin,
                 request_id: Annotated[str | None, Query(max_length=64)] = None,
                 type: Annotated[str | None, Query(max_length=64)] = None,
                 account: Annotated[str | None, Query(max_length=64)] = None,
                 tenant: str | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, object]]:
    """Audit events, newest first, by request id (what an error page shows), type (or a
    prefix ending in a dot) or account: at least one of them."""
    if not (request_id or type or account):
        raise HTTPException(400, "give request_id, type or account")
    flt = AuditFilter(type=type or None, account_id=account or None,
                      request_id=request_id or None)
    return [ev.as_dict() for ev in
            audit_export.search(ctx_of(request), flt, tenant, limit=limit)]


class RevokeSessionsIn(BaseModel):
    account_id: str | None = None


@router.post("/console/revoke-sessions")
def revoke_console_sessions(request: Request, body: RevokeSessionsIn,
                            _: Admin) -> dict[str, int]:
    """End every open admin console session (of one account if given)."""
    return {"revoked": console.revoke_admin_sessions(ctx_of(request),
                                                     account_id=body.account_id)}


@router.get("/config/export")
def export_configuration(request: Request, _: Admin,
                         tenant: str | None = None) -> dict[str, str]:
    """The configuration file (`jitprov export`): tenants (or one), policies, connections,
    mappings, verified domains, webhooks; secrets as ${ENV_VAR} references."""
    return {"document": config_file.export_config(ctx_of(request), tenant)}


class ConfigApplyIn(BaseModel):
    document: str = Field(max_length=config_file.MAX_FILE_BYTES,
                          description="the configuration file (YAML); mappings inline")
    env: dict[str, str] = Field(
        {}, description="the values of the ${ENV_VAR} references the document makes; the "
                        "server's own environment is never read")
    dry_run: bool = False
    prune: bool = False


@router.post("/config/apply")
def apply_configuration(request: Request, body: ConfigApplyIn,
                        who: Admin) -> dict[str, object]:
    """Make the database say what the document says, all or nothing (`jitprov apply`); a
    refusal is a 400 naming the document's line and key."""
    source = config_file.load_source(body.document.encode("utf-8"), "document",
                                     base_dir=None, env=body.env)
    # audited as admin-token:<id>:<name> apply:<digest>, the token's name shortened so the
    # actor fits every *_by column (200 characters)
    by = f"admin-token:{who.token_id}:{who.name[:100]}"
    result = config_file.apply_config(ctx_of(request), source, dry_run=body.dry_run,
                                      prune=body.prune, by=by)
    return {"actor": result.actor, "dry_run": result.dry_run,
            "changes": [{"action": c.action, "kind": c.kind, "name": c.name,
                         "fields": list(c.fields), "line": str(c)} for c in result.changes],
            "previews": {slug: report.as_dict() for slug, report in result.previews.items()}}
