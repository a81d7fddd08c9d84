"""The admin REST API (``/api``): every CLI command reachable over HTTP, bearer-token guarded.

FastAPI serves it for request validation and the OpenAPI document at ``/openapi.json``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from jitprov.core.auth_context import MfaRequirement
from jitprov.core.identity import ExternalIdentity
from jitprov.core.mapping import load_policy
from jitprov.services import (
    accounts,
    admin,
    audit_export,
    break_glass,
    discovery,
    health_metrics,
    links,
    mapping_preview,
    metrics,
    webhooks,
)
from jitprov.services.admin import AdminPrincipal
from jitprov.services.login.flow import dry_run_login
from jitprov.services.login.oidc import (
    backchannel_logout_uri,
    post_logout_redirect_uri,
    scope_warnings,
)
from jitprov.services.login.saml import connection_config
from jitprov.services.records import AccountView, DomainRecord
from jitprov.web.routes.common import ctx_of, settings_of

bearer = HTTPBearer(auto_error=False)


async def require_admin(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AdminPrincipal:
    token = credentials.credentials if credentials else None
    principal = await run_in_threadpool(admin.authenticate_admin, ctx_of(request), token)
    if principal is None:
        raise HTTPException(401, "a valid admin bearer token is required",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


Admin = Annotated[AdminPrincipal, Depends(require_admin)]
#: the largest paging offset taken: what every database holds in a 32-bit integer, so a
#: larger one is a 422 from validation rather than an overflow inside the driver
MAX_OFFSET = 2**31 - 1
router = APIRouter(prefix="/api", tags=["admin"])


class TenantIn(BaseModel):
    slug: str = Field(examples=["st-marys"])
    name: str | None = None


class MappingIn(BaseModel):
    mapping: str = Field(description="the mapping YAML")
    source: str = Field("api", description="a name for error messages and the audit log")


class DryRunIn(BaseModel):
    subject: str
    claims: dict[str, Any]


def _account_json(v: AccountView) -> dict[str, object]:
    acc = v.account
    return {"id": acc.id, "tenant": v.tenant_slug, "status": acc.status, "kind": acc.kind,
            "email": acc.email, "name": acc.profile.get("name"), "profile": dict(acc.profile),
            "roles": sorted(acc.roles),
            "grants": [{"role": g.role, "source": g.source,
                        "expires_at": g.expires_at.isoformat() if g.expires_at else None}
                       for g in sorted(acc.grants)],
            "pending_roles": [{"role": p.role, "source": p.source} for p in sorted(acc.pending)],
            "groups": sorted(acc.groups), "provisioned_by": acc.provisioned_by,
            "identities": [{"connection": i.connection, "subject": i.subject}
                           for i in v.identities],
            "created_at": v.created_at.isoformat(), "updated_at": v.updated_at.isoformat(),
            "last_login_at": v.last_login_at.isoformat() if v.last_login_at else None}


@router.get("/tenants")
def list_tenants(request: Request, _: Admin) -> list[dict[str, object]]:
    return [{"slug": t.slug, "name": t.name, "created_at": t.created_at.isoformat()}
            for t in admin.list_tenants(ctx_of(request))]


@router.post("/tenants", status_code=201)
def create_tenant(request: Request, body: TenantIn, who: Admin) -> dict[str, object]:
    t = admin.create_tenant(ctx_of(request), body.slug, body.name, actor=who.actor)
    return {"slug": t.slug, "name": t.name, "created_at": t.created_at.isoformat()}


class DomainIn(BaseModel):
    domain: str = Field(examples=["st-marys.example"], max_length=1024,
                        description="an email domain the tenant owns (Unicode or ASCII form)")
    connection: str = Field(description="the tenant's connection its people sign in through")


def _domain_json(d: DomainRecord) -> dict[str, object]:
    return {"domain": d.domain, "tenant": d.tenant_slug, "connection": d.connection_slug,
            "verified_by": d.verified_by, "verified_at": d.verified_at.isoformat()}


@router.get("/tenants/{tenant}/domains")
def list_domains(request: Request, tenant: str, _: Admin) -> list[dict[str, object]]:
    """The tenant's verified email domains (home-realm discovery)."""
    return [_domain_json(d) for d in discovery.list_domains(ctx_of(request), tenant)]


@router.post("/tenants/{tenant}/domains", status_code=201)
def add_domain(request: Request, tenant: str, body: DomainIn, who: Admin) -> dict[str, object]:
    """Verify an email domain for the tenant (no DNS record is read: this call is the
    verification, audited as ``domain.verified`` with the token as actor) and map it to one of
    its connections. 409 when another tenant holds the domain."""
    return _domain_json(discovery.add_domain(ctx_of(request), tenant, body.domain,
                                             connection=body.connection, actor=who.actor))


@router.delete("/tenants/{tenant}/domains/{domain}")
def remove_domain(request: Request, tenant: str, domain: str, who: Admin) -> dict[str, object]:
    """Audited as ``domain.removed``."""
    name = discovery.remove_domain(ctx_of(request), tenant, domain, actor=who.actor)
    return {"domain": name, "tenant": tenant, "removed": True}


@router.get("/tenants/{tenant}/users")
def list_users(request: Request, tenant: str, _: Admin,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100,
               offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
               ) -> list[dict[str, object]]:
    return [_account_json(v) for v in
            admin.list_accounts(ctx_of(request), tenant, limit=limit, offset=offset)]


class StatusIn(BaseModel):
    status: Literal["active", "suspended", "deactivated"]
    reason: str = Field(min_length=1)


@router.post("/accounts/{account_id}/status")
def set_account_status(request: Request, account_id: str, body: StatusIn,
                       who: Admin) -> dict[str, object]:
    """Deactivate, suspend or reactivate; sessions are revoked in the same transaction."""
    change = accounts.set_account_status(ctx_of(request), account_id, body.status,
                                      reason=body.reason, actor=who.actor)
    return {"account_id": account_id, "before": change.before, "after": change.after,
            "sessions_revoked": change.sessions_revoked}


class ApprovalIn(BaseModel):
    approve: bool
    reason: str = Field(min_length=1)
    valid_days: int | None = Field(None, ge=1, le=3650)


@router.get("/tenants/{tenant}/approvals")
def list_approvals(request: Request, tenant: str, _: Admin) -> list[dict[str, object]]:
    return [{"id": r.id, "account_id": r.account_id, "email": r.email, "role": r.role,
             "requested_by": r.source, "requested_at": r.requested_at.isoformat()}
            for r in accounts.list_requests(ctx_of(request), tenant)]


@router.post("/approvals/{request_id}")
def decide_approval(request: Request, request_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                    body: ApprovalIn,
                    who: Admin) -> dict[str, object]:
    decision = accounts.decide_request(
        ctx_of(request), request_id, approve=body.approve, reason=body.reason,
        approver=who.actor,
        valid_for=timedelta(days=body.valid_days) if body.valid_days else None)
    return {"id": request_id, "role": decision.request.role, "approved": decision.approved,
            "expires_at": decision.expires_at.isoformat() if decision.expires_at else None}


class LinkDecisionIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


LinkPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/tenants/{tenant}/links")
def list_links(request: Request, tenant: str, _: Admin,
               status: Literal["pending", "refused"] = "pending") -> list[dict[str, object]]:
    """Links a first login asked for (``linking.by_email: pending``), or refusals that hold."""
    return [links.as_json(link) for link in
            links.list_links(ctx_of(request), tenant, statuses=(status,))]


@router.post("/tenants/{tenant}/links/{link_id}/{decision}")
def decide_link(request: Request, tenant: str, link_id: LinkPath,
                decision: Literal["approve", "refuse", "clear"], body: LinkDecisionIn,
                who: Admin) -> dict[str, object]:
    """Approve (the identity signs in to the account from its next login), refuse (its
    logins are refused until cleared) or clear a refusal."""
    ctx = ctx_of(request)
    if decision == "clear":
        done = links.clear_refusal(ctx, tenant, link_id, reason=body.reason, actor=who.actor)
    else:
        done = links.decide_link(ctx, tenant, link_id, approve=decision == "approve",
                                 reason=body.reason, actor=who.actor)
    return {"id": link_id, "status": done.status, "account_id": done.link.account_id,
            "connection": done.link.connection, "subject": done.link.subject}


class GrantIn(BaseModel):
    role: str = Field(description="letters, digits and . _ : - (1 to 64); free-form")
    reason: str = Field(min_length=1)
    expires_in_days: int | None = Field(None, ge=1, le=accounts.MAX_GRANT_DAYS)


class RevokeIn(BaseModel):
    reason: str = Field(min_length=1)
    block: bool = Field(False, description="keep the role off this account, rules "
                        "included, until the override is deleted")


class UnblockIn(BaseModel):
    reason: str = Field(min_length=1)


#: A DELETE's reason (and block) may come as query parameters: proxies and some clients drop
#: a DELETE's body. The body wins when both are given.
ReasonQuery = Annotated[str | None, Query(alias="reason", min_length=1, max_length=500)]


def _reason(body: RevokeIn | UnblockIn | None, query: str | None) -> str:
    reason = body.reason if body is not None else query
    if not reason:
        raise HTTPException(422, "a reason is required: a JSON body {\"reason\": ...} or "
                                 "?reason=...")
    return reason


def _grants_json(listing: accounts.GrantListing) -> dict[str, object]:
    return {"grants": [{"account_id": g.account_id, "email": g.email, "role": g.role,
                        "source": g.source, "granted_by": g.granted_by,
                        "granted_at": g.granted_at.isoformat(),
                        "expires_at": g.expires_at.isoformat() if g.expires_at else None}
                       for g in listing.grants],
            "overrides": [{"account_id": b.account_id, "email": b.email, "role": b.role,
                           "effect": "blocked", "blocked_by": b.blocked_by,
                           "blocked_at": b.blocked_at.isoformat(), "reason": b.reason}
                          for b in listing.blocks]}


@router.get("/tenants/{tenant}/grants")
def list_tenant_grants(request: Request, tenant: str, _: Admin,
                       account: str | None = None) -> dict[str, object]:
    """Grants in force (an expired grant is not held) with provenance, and overrides."""
    return _grants_json(accounts.list_grants(ctx_of(request), tenant, account_id=account))


@router.get("/tenants/{tenant}/accounts/{account_id}/grants")
def list_account_grants(request: Request, tenant: str, account_id: str,
                        _: Admin) -> dict[str, object]:
    return _grants_json(accounts.list_grants(ctx_of(request), tenant, account_id=account_id))


@router.post("/tenants/{tenant}/accounts/{account_id}/grants", status_code=201)
def add_grant(request: Request, tenant: str, account_id: str, body: GrantIn,
              who: Admin) -> dict[str, object]:
    """Grant one role by hand (source ``manual``), optionally time-bound."""
    change = accounts.grant_role(ctx_of(request), tenant, account_id, body.role,
                                 reason=body.reason, actor=who.actor,
                                 expires_in_days=body.expires_in_days)
    return {"account_id": account_id, "role": change.role, "source": change.source,
            "expires_at": change.expires_at.isoformat() if change.expires_at else None}


@router.delete("/tenants/{tenant}/accounts/{account_id}/grants/{role}")
def revoke_grant(request: Request, tenant: str, account_id: str, role: str, who: Admin,
                 body: RevokeIn | None = None, reason: ReasonQuery = None,
                 block: Annotated[bool, Query()] = False) -> dict[str, object]:
    """Revoke a role not granted by a rule; a rule's role answers 400 naming the rule unless
    ``block`` (then an override keeps it off the account). ``reason`` and ``block`` in a JSON
    body or as query parameters."""
    change = accounts.revoke_role(ctx_of(request), tenant, account_id, role,
                                  reason=_reason(body, reason), actor=who.actor,
                                  block=body.block if body is not None else block)
    return {"account_id": account_id, "role": change.role,
            "revoked": change.source.split(",") if change.source else [],
            "blocked": change.blocked}


@router.delete("/tenants/{tenant}/accounts/{account_id}/overrides/{role}")
def unblock_role(request: Request, tenant: str, account_id: str, role: str, who: Admin,
                 body: UnblockIn | None = None,
                 reason: ReasonQuery = None) -> dict[str, object]:
    """Lift a block: rules may grant the role again from the next login. ``reason`` in a
    JSON body or as a query parameter."""
    accounts.unblock_role(ctx_of(request), tenant, account_id, role,
                          reason=_reason(body, reason), actor=who.actor)
    return {"account_id": account_id, "role": role, "blocked": False}


class WebhookIn(BaseModel):
    url: str
    event_types: list[str] = Field(default_factory=lambda: ["*"])


@router.post("/tenants/{tenant}/webhooks", status_code=201)
def add_webhook(request: Request, tenant: str, body: WebhookIn,
                who: Admin) -> dict[str, object]:
    """The signing secret is in this answer only."""
    created = webhooks.add_endpoint(ctx_of(request), tenant, body.url, body.event_types,
                                    actor=who.actor)
    return {"id": created.id, "secret": created.secret}


@router.get("/tenants/{tenant}/webhooks")
def list_webhooks(request: Request, tenant: str, _: Admin) -> list[dict[str, object]]:
    return [{"id": e.id, "url": e.url, "event_types": list(e.event_types),
             "enabled": e.enabled} for e in webhooks.list_endpoints(ctx_of(request), tenant)]


@router.get("/tenants/{tenant}/webhook-deliveries")
def list_webhook_deliveries(request: Request, tenant: str, _: Admin,
                            status: str | None = None) -> list[dict[str, object]]:
    return [{"id": d.id, "event_type": d.event_type, "status": d.status,
             "attempts": d.attempts, "last_status": d.last_status, "last_error": d.last_error,
             "next_attempt_at": d.next_attempt_at.isoformat(),
             "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None}
            for d in webhooks.list_deliveries(ctx_of(request), tenant, status=status)]


@router.post("/webhook-deliveries/{delivery_id}/replay")
def replay_webhook(request: Request, delivery_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                   who: Admin) -> dict[str, object]:
    webhooks.replay(ctx_of(request), delivery_id, actor=who.actor)
    return {"id": delivery_id, "status": "pending"}


class BreakGlassIn(BaseModel):
    roles: list[str] = Field(min_length=1)
    reason: str = Field(min_length=1)
    valid_minutes: int = Field(60, ge=1, le=240)


@router.post("/tenants/{tenant}/break-glass", status_code=201)
def request_break_glass(request: Request, tenant: str, body: BreakGlassIn,
                        who: Admin) -> dict[str, object]:
    request_id = break_glass.request_access(ctx_of(request), tenant, roles=body.roles,
                                            reason=body.reason, requested_by=who.actor,
                                            valid_minutes=body.valid_minutes)
    return {"id": request_id, "status": "requested"}


@router.post("/break-glass/{request_id}/approve")
def approve_break_glass(request: Request, request_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                        who: Admin) -> dict[str, object]:
    """Another admin token than the requester's (dual control); the code is in this answer
    only."""
    issued = break_glass.approve_access(ctx_of(request), request_id, approved_by=who.actor)
    return {"id": request_id, "code": issued.code, "expires_at": issued.expires_at.isoformat()}


@router.get("/connections")
def list_connections(request: Request, _: Admin,
                     tenant: str | None = None) -> list[dict[str, object]]:
    return [{"slug": c.slug, "tenant": c.tenant_slug, "kind": c.kind, "enabled": c.enabled,
             "version": c.version, "mapping_source": c.mapping_source}
            for c in admin.list_connections(ctx_of(request), tenant)]


class OidcConnectionIn(BaseModel):
    tenant: str
    slug: str
    config: dict[str, Any] = Field(description="issuer, client_id, scopes, token_auth_method, "
                                   "userinfo, entra_multi_tenant, google_hosted_domains...")
    client_secret: str | None = None
    mapping: str | None = None
    mapping_source: str | None = None
    check_provider: bool = True
    require_mfa: bool | None = Field(
        None, description="refuse a sign-in whose ID token reports no accepted acr/amr value "
        "(also settable as config.require_mfa)")
    accepted_auth_contexts: list[str] | None = Field(
        None, description="with require_mfa: accepted acr and amr values (default: amr "
        "mfa); the acr values are requested as acr_values")


def _with_mfa(config: dict[str, Any], require_mfa: bool | None,
              accepted: list[str] | None) -> dict[str, Any]:
    """A connection config with the body's MFA fields, when given, over its own."""
    return {**config, **({"require_mfa": require_mfa} if require_mfa is not None else {}),
            **({"accepted_auth_contexts": accepted} if accepted is not None else {})}


def _mfa_fields(config: Mapping[str, object]) -> dict[str, object]:
    """What the 201 body says of MFA: whether it is required, and the values in force."""
    requirement = MfaRequirement.of(config)
    return {"require_mfa": requirement is not None,
            "accepted_auth_contexts": list(requirement.accepted) if requirement else []}


@router.post("/connections/oidc", status_code=201)
def add_oidc_connection(request: Request, body: OidcConnectionIn,
                        who: Admin) -> dict[str, object]:
    c = admin.add_oidc_connection(
        ctx_of(request), tenant=body.tenant, slug=body.slug,
        config=_with_mfa(body.config, body.require_mfa, body.accepted_auth_contexts),
        client_secret=body.client_secret, mapping=body.mapping,
        mapping_source=body.mapping_source, check_provider=body.check_provider,
        actor=who.actor)
    base_url = request.app.state.settings.base_url
    return {"slug": c.slug, "tenant": c.tenant_slug, "kind": c.kind,
            "redirect_uri": f"{base_url}/sso/{c.slug}/oidc/callback",
            "post_logout_redirect_uri": post_logout_redirect_uri(base_url, c.slug),
            "backchannel_logout_uri": backchannel_logout_uri(base_url, c.slug),
            **_mfa_fields(c.config),
            # claims the mapping reads that the scopes are unlikely to bring
            "warnings": scope_warnings(ctx_of(request), c.slug, discovery="fetch"
                                       if body.check_provider else "none")}


class SamlConnectionIn(BaseModel):
    tenant: str
    slug: str
    idp_metadata_url: str | None = Field(None, description="https (http on loopback only); "
                                         "re-read every metadata_refresh_seconds")
    idp_metadata_xml: str | None = Field(None, description="the IdP metadata document")
    idp_entity_id: str | None = Field(None, description="picks one IdP of an aggregate")
    require_signed_assertion: bool | None = Field(
        None, description="true: the Assertion must carry its own signature; false (the "
        "default): a signed Response that envelopes it is enough")
    sign_authn_requests: bool | None = Field(
        None, description="true (the default): every AuthnRequest is signed; false: only "
        "when the IdP metadata asks (WantAuthnRequestsSigned). The SP metadata's "
        "AuthnRequestsSigned says which")
    options: dict[str, Any] = Field(default_factory=dict, description="other SAML config "
                                    "fields: allow_idp_initiated, clock_skew_seconds...")
    require_mfa: bool | None = Field(
        None, description="refuse an assertion whose AuthnContextClassRef is not accepted")
    accepted_auth_contexts: list[str] | None = Field(
        None, description="with require_mfa: the accepted AuthnContextClassRef URIs (at "
        "least one), requested with RequestedAuthnContext Comparison=\"exact\"")
    mapping: str | None = None
    mapping_source: str | None = None


def _given(**fields: object) -> dict[str, object]:
    """The fields the request gave (not None): they override the same ones in ``options``."""
    return {name: value for name, value in fields.items() if value is not None}


@router.post("/connections/saml", status_code=201)
def add_saml_connection(request: Request, body: SamlConnectionIn,
                        who: Admin) -> dict[str, object]:
    c = admin.add_saml_connection(
        ctx_of(request), tenant=body.tenant, slug=body.slug,
        metadata_xml=body.idp_metadata_xml.encode() if body.idp_metadata_xml else None,
        metadata_url=body.idp_metadata_url, entity_id=body.idp_entity_id,
        options=_with_mfa({**body.options, **_given(
            require_signed_assertion=body.require_signed_assertion,
            sign_authn_requests=body.sign_authn_requests)},
            body.require_mfa, body.accepted_auth_contexts),
        mapping=body.mapping, mapping_source=body.mapping_source, actor=who.actor)
    base = f"{request.app.state.settings.base_url}/sso/{c.slug}"
    return {"slug": c.slug, "tenant": c.tenant_slug, "kind": c.kind,
            "idp_entity_id": c.config.get("idp_entity_id"),
            "require_signed_assertion": c.config.get("require_signed_assertion"),
            "authn_requests_signed": connection_config(c).signs_authn_requests,
            **_mfa_fields(c.config),
            "sp_metadata_url": f"{base}/saml/metadata", "sp_entity_id": f"{base}/saml/metadata",
            "acs_url": f"{base}/saml/acs", "login_url": f"{base}/login"}


@router.put("/connections/{connection}/mapping")
def set_mapping(request: Request, connection: str, body: MappingIn,
                who: Admin) -> dict[str, object]:
    version = admin.set_mapping(ctx_of(request), connection, body.mapping, body.source,
                                actor=who.actor)
    return {"connection": connection, "version": version}


@router.post("/mapping/check")
def check_mapping(body: MappingIn, _: Admin) -> dict[str, object]:
    """Validate a mapping; a bad one answers 422 with file, line and rule in the message."""
    policy = load_policy(body.mapping, body.source)
    return {"ok": True, "fingerprint": policy.fingerprint}


@router.post("/connections/{connection}/mapping/test")
def test_mapping(request: Request, connection: str, body: DryRunIn,
                 _: Admin) -> dict[str, object]:
    """Dry run of a login with these claims: decision and rule trace; nothing written."""
    return dry_run_login(ctx_of(request), connection, ExternalIdentity(
        issuer="dry-run", subject=body.subject, claims=body.claims)).as_dict()


class PreviewIn(MappingIn):
    limit: int = Field(200, ge=1, le=1000, description="recorded logins to replay")


@router.post("/connections/{connection}/mapping/preview")
def preview_mapping(request: Request, connection: str, body: PreviewIn,
                    _: Admin) -> dict[str, object]:
    """Impact preview: who would gain or lose which role, whose profile changes, who would
    become denied, if this mapping replaced the connection's (its last ``limit`` recorded
    logins replayed through both); nothing written. A bad mapping answers 422."""
    return mapping_preview.preview_impact(ctx_of(request), connection, body.mapping,
                                          body.source, limit=body.limit).as_dict()


@router.get("/tenants/{tenant}/access-review")
def access_review(request: Request, tenant: str, _: Admin,
                  format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv") -> Response:
    body = audit_export.access_review(ctx_of(request), tenant, format)
    media = "application/json" if format == "json" else "text/csv"
    return Response(body, media_type=media)


metrics_router = APIRouter()


async def require_scraper(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The metrics token (``JITPROV_METRICS_TOKEN``, compared in constant time), which opens
    nothing but ``/metrics``, or an admin token."""
    expected = settings_of(request).ops.metrics_token
    given = credentials.credentials if credentials else ""
    if expected and given and hmac.compare_digest(given.encode(), expected.encode()):
        return
    await require_admin(request, credentials)


@metrics_router.get("/metrics", include_in_schema=False,
                    dependencies=[Depends(require_scraper)])
def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format (scrape with the metrics token, or an admin token, as a
    bearer credential): the counters of every process, and gauges of the shared state (IdP
    health, outbox age) read now."""
    return Response(metrics.exposition() + health_metrics.exposition(ctx_of(request)),
                    media_type="text/plain; version=0.0.4")


@router.get("/audit/verify")
def verify_audit(request: Request, _: Admin, tenant: str | None = None) -> dict[str, object]:
    reports = audit_export.verify(ctx_of(request), tenant)
    return {"intact": all(r.intact for r in reports),
            "tenants": [{"tenant": r.tenant, "events": r.events,
                         "problems": [str(p) for p in r.problems]} for r in reports]}


@router.get("/audit/export")
def export_audit(request: Request, _: Admin, tenant: str | None = None,
                 format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
                 ) -> StreamingResponse:
    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(audit_export.export_lines(ctx_of(request), format, tenant),
                             media_type=media)
