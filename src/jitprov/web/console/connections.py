"""Connections: the tenant's IdPs with their health, and adding an OIDC or SAML one through
``services/admin.py`` (the same calls as ``jitprov connection add-oidc|add-saml``).

A form that fails (a bad issuer, metadata that does not parse, a taken slug) is shown again
with the reason and what was typed (never the client secret).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from jitprov.core.errors import JitprovError
from jitprov.services import admin, mapping_preview
from jitprov.services.login.oidc import scope_warnings
from jitprov.web.console.shell import (
    call,
    form_with_csrf,
    redirect,
    render,
    require_admin,
    tenant_of,
)
from jitprov.web.routes.common import ctx_of, settings_of

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
MAX_METADATA_BYTES = 1024 * 1024  # a federation aggregate is bigger: give its URL instead
DEFAULT_SCOPES = "openid email profile"


def _text(form: FormData, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _mfa_config(accepted: str) -> dict[str, object]:
    """The one MFA field of the form: the accepted values, space-separated; empty, MFA is
    not required."""
    values = accepted.split()
    return {"require_mfa": True, "accepted_auth_contexts": values} if values else {}


async def list_connections(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    overview = await call(mapping_preview.connections_overview, ctx_of(request), tenant)
    saved = request.query_params.get("created")
    flash = f"Connection {saved} created." if saved else None
    created = next((o.connection for o in overview if o.connection.slug == saved), None)
    warnings: list[str] = []
    if created is not None and created.kind == "oidc":  # discovery is cached from creation
        try:
            warnings = await run_in_threadpool(
                lambda: scope_warnings(ctx_of(request), created.slug, discovery="cached"))
        except JitprovError:
            warnings = []
    return render(request, "admin/connections.html", principal, tenant=tenant,
                  connections=overview, base_url=settings_of(request).base_url, flash=flash,
                  scope_warnings=warnings)


async def new_connection(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    return _form_page(request, principal, tenant, {"scopes": DEFAULT_SCOPES,
                                                   "check_provider": True})


def _form_page(request: Request, principal: Any, tenant: str, values: dict[str, object], *,
               error: str | None = None, kind: str | None = None,
               status_code: int = 200) -> Response:
    return render(request, "admin/connection_new.html", principal, status_code=status_code,
                  tenant=tenant, values=values, error=error, error_kind=kind,
                  base_url=settings_of(request).base_url)


async def create_oidc(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    slug = _text(form, "slug", 63)
    issuer = _text(form, "issuer")
    if issuer.endswith(DISCOVERY_SUFFIX):  # the discovery URL was pasted: its issuer
        issuer = issuer[: -len(DISCOVERY_SUFFIX)]
    client_id = _text(form, "client_id", 500)
    secret = form.get("client_secret")
    scopes = _text(form, "scopes", 500) or DEFAULT_SCOPES
    check = form.get("check_provider") == "on"
    mfa = _text(form, "auth_contexts", 2000)
    values: dict[str, object] = {"slug": slug, "issuer": issuer, "client_id": client_id,
                                 "scopes": scopes, "check_provider": check,
                                 "auth_contexts": mfa}
    if not (slug and issuer and client_id):
        return _form_page(request, principal, tenant, values, kind="oidc", status_code=400,
                          error="the slug, issuer and client id are required")
    try:
        await run_in_threadpool(
            admin.add_oidc_connection, ctx_of(request), tenant=tenant, slug=slug,
            config={"issuer": issuer, "client_id": client_id, "scopes": scopes.split(),
                    **_mfa_config(mfa)},
            client_secret=secret.strip() if isinstance(secret, str) and secret.strip()
            else None, mapping=None, mapping_source=None, check_provider=check,
            actor=principal.actor)
    except JitprovError as exc:
        return _form_page(request, principal, tenant, values, kind="oidc", status_code=400,
                          error=str(exc))
    return redirect(f"/admin/connections?tenant={tenant}&created={slug}")


async def create_saml(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    slug = _text(form, "slug", 63)
    url = _text(form, "metadata_url")
    xml = form.get("metadata_xml")
    xml = xml.strip() if isinstance(xml, str) else ""
    require_signed_assertion = form.get("require_signed_assertion") == "on"
    unsigned_authn_requests = form.get("unsigned_authn_requests") == "on"  # absent: signed
    mfa = _text(form, "saml_auth_contexts", 2000)
    values: dict[str, object] = {"saml_slug": slug, "metadata_url": url,
                                 "require_signed_assertion": require_signed_assertion,
                                 "unsigned_authn_requests": unsigned_authn_requests,
                                 "saml_auth_contexts": mfa}
    problem = None
    if not slug:
        problem = "the slug is required"
    elif bool(url) == bool(xml):
        problem = "give the IdP metadata URL or its XML document, not both"
    elif len(xml.encode()) > MAX_METADATA_BYTES:
        problem = "the metadata document is larger than 1 MiB: give its URL instead"
    if problem is not None:
        return _form_page(request, principal, tenant, values, kind="saml", status_code=400,
                          error=problem)
    try:
        await run_in_threadpool(
            admin.add_saml_connection, ctx_of(request), tenant=tenant, slug=slug,
            metadata_xml=xml.encode() if xml else None, metadata_url=url or None,
            mapping=None, mapping_source=None, actor=principal.actor,
            options={"require_signed_assertion": require_signed_assertion,
                     "sign_authn_requests": not unsigned_authn_requests,
                     **_mfa_config(mfa)})
    except JitprovError as exc:
        return _form_page(request, principal, tenant, values, kind="saml", status_code=400,
                          error=str(exc))
    return redirect(f"/admin/connections?tenant={tenant}&created={slug}")


ROUTES = [
    ("/admin/connections", list_connections, ["GET"]),
    ("/admin/connections/new", new_connection, ["GET"]),
    ("/admin/connections/oidc", create_oidc, ["POST"]),
    ("/admin/connections/saml", create_saml, ["POST"]),
]
