"""Webhooks: the tenant's endpoints, their recent deliveries with status, and replaying a
dead-lettered delivery, through ``services/webhooks.py``."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import webhooks
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
from jitprov.web.routes.common import ctx_of

RECENT_DELIVERIES = 100
STATUSES = ("pending", "delivered", "dead")


def shown_url(url: str) -> str:
    """An endpoint URL without its query and fragment (they may carry a receiver's token)."""
    return urlsplit(url)._replace(query="", fragment="").geturl()


async def list_webhooks(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise AdminRefused(400, f"status: one of {', '.join(STATUSES)}")
    ctx = ctx_of(request)
    endpoints = await call(webhooks.list_endpoints, ctx, tenant)
    deliveries = await call(webhooks.list_deliveries, ctx, tenant, status=status,
                            limit=RECENT_DELIVERIES)
    urls = {e.id: shown_url(e.url) for e in endpoints}
    replayed = request.query_params.get("replayed")
    flash = f"Delivery {replayed} queued again." if replayed and digits(replayed) else None
    return render(request, "admin/webhooks.html", principal, tenant=tenant,
                  endpoints=endpoints, urls=urls, deliveries=deliveries, status=status,
                  statuses=STATUSES, flash=flash)


async def replay(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    tenant = tenant_of(request, principal, form)
    raw = request.path_params["delivery_id"]
    if not digits(raw) or len(raw) > 9:
        raise AdminRefused(404, "no such delivery")
    delivery_id = int(raw)
    ctx = ctx_of(request)
    # only this tenant's dead-lettered deliveries (the service would replay any tenant's)
    dead = await call(webhooks.list_deliveries, ctx, tenant, status="dead", limit=1000)
    if not any(d.id == delivery_id for d in dead):
        raise AdminRefused(404, f"no dead-lettered delivery {delivery_id} in tenant {tenant}")
    await call(webhooks.replay, ctx, delivery_id, actor=principal.actor)
    return redirect(f"/admin/webhooks?tenant={tenant}&replayed={delivery_id}")


ROUTES = [
    ("/admin/webhooks", list_webhooks, ["GET"]),
    ("/admin/webhooks/deliveries/{delivery_id}/replay", replay, ["POST"]),
]
