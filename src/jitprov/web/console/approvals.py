"""Approvals: roles a mapping rule marks ``approval: required``, approved or denied with a
reason through ``services/accounts.py``."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import accounts, console
from jitprov.web.console.shell import (
    AdminRefused,
    call,
    check_tenant,
    digits,
    form_with_csrf,
    redirect,
    render,
    require_admin,
    tenant_of,
)
from jitprov.web.routes.common import ctx_of


async def list_requests(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    pending = await call(accounts.list_requests, ctx_of(request), tenant)
    done = request.query_params.get("done")
    flash = {"approved": "Approved: the role is granted.",
             "denied": "Denied: the request is closed."}.get(done or "")
    return render(request, "admin/approvals.html", principal, tenant=tenant, requests=pending,
                  flash=flash)


async def decide(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    raw_id = request.path_params["request_id"]
    if not digits(raw_id) or len(raw_id) > 9:
        raise AdminRefused(404, "no such approval request")
    request_id = int(raw_id)
    tenant = await call(console.request_tenant, ctx_of(request), request_id)
    check_tenant(principal, tenant)
    decision = form.get("decision")
    reason = form.get("reason")
    reason = reason.strip() if isinstance(reason, str) else ""
    days = form.get("valid_days")
    days = days.strip() if isinstance(days, str) else ""
    if decision not in ("approve", "deny"):
        raise AdminRefused(400, "choose approve or deny")
    if not reason:
        raise AdminRefused(400, "a reason is required")
    valid_for = None
    if days and decision == "approve":
        if not digits(days) or not 1 <= int(days) <= 3650:
            raise AdminRefused(400, "valid for: a whole number of days, 1 to 3650")
        valid_for = timedelta(days=int(days))
    await call(accounts.decide_request, ctx_of(request), request_id,
               approve=decision == "approve", reason=reason[:500], approver=principal.actor,
               valid_for=valid_for)
    outcome = "approved" if decision == "approve" else "denied"
    return redirect(f"/admin/approvals?tenant={tenant}&done={outcome}")


ROUTES = [
    ("/admin/approvals", list_requests, ["GET"]),
    ("/admin/approvals/{request_id}", decide, ["POST"]),
]
