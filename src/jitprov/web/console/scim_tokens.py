"""SCIM tokens: the bearer tokens of the tenant's SCIM clients (IdPs), with their last use;
create one (shown once, only its hash is stored) and revoke one, through
``services/scim/tokens.py``."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jitprov.core.errors import JitprovError
from jitprov.services import admin
from jitprov.services.console import AdminPrincipal
from jitprov.services.scim import tokens
from jitprov.web.console.shell import (
    AdminRefused,
    call,
    digits,
    form_with_csrf,
    redirect,
    render,
    require_admin,
    tenant_of,
)
from jitprov.web.routes.common import ctx_of, settings_of

MAX_EXPIRY_DAYS = 3650


async def list_tokens(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    flash = "Token revoked: it is refused on every node within seconds." \
        if request.query_params.get("revoked") else None
    return await _page(request, principal, tenant, flash=flash)


async def _page(request: Request, principal: AdminPrincipal, tenant: str, *,
                status_code: int = 200, **context: object) -> Response:
    ctx = ctx_of(request)
    listed = await call(tokens.list_tokens, ctx, tenant)
    connections = await call(admin.list_connections, ctx, tenant)
    names = {c.id: c.slug for c in connections}
    return render(request, "admin/scim_tokens.html", principal, status_code=status_code,
                  tenant=tenant, tokens=listed, connections=connections, names=names,
                  now=ctx.clock(), scim_url=f"{settings_of(request).base_url}/scim/v2/{tenant}",
                  **context)


async def create(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    name = form.get("name")
    name = name.strip() if isinstance(name, str) else ""
    days = form.get("expires_days")
    days = days.strip() if isinstance(days, str) else ""
    connection = form.get("connection")
    connection = connection if isinstance(connection, str) and connection else None
    if days and (not digits(days) or not 1 <= int(days) <= MAX_EXPIRY_DAYS):
        raise AdminRefused(400, f"expires in: a whole number of days, 1 to {MAX_EXPIRY_DAYS}")
    try:
        token_id, token = await run_in_threadpool(
            tokens.create_token, ctx_of(request), tenant, name,
            expires_in=timedelta(days=int(days)) if days else None, connection=connection,
            actor=principal.actor)
    except JitprovError as exc:
        return await _page(request, principal, tenant, status_code=400, error=str(exc))
    # shown once, in this answer only (the console's pages are Cache-Control: no-store)
    return await _page(request, principal, tenant, created_id=token_id, created_token=token,
                       created_name=name)


async def revoke(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    raw = request.path_params["token_id"]
    if not digits(raw) or len(raw) > 9:
        raise AdminRefused(404, "no such SCIM token")
    await call(tokens.revoke_token, ctx_of(request), tenant, int(raw), actor=principal.actor)
    return redirect(f"/admin/scim-tokens?tenant={tenant}&revoked={raw}")


ROUTES = [
    ("/admin/scim-tokens", list_tokens, ["GET"]),
    ("/admin/scim-tokens", create, ["POST"]),
    ("/admin/scim-tokens/{token_id}/revoke", revoke, ["POST"]),
]
