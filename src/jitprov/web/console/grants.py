"""Grants by hand: on a user's page, add a role or revoke one (a rule's role only by blocking
it), lift a block; the access-review page, with a revoke on each row. Every form carries the
session's CSRF token and a reason; the work is ``services/accounts.py``'s."""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import accounts, audit_export, console
from jitprov.services.console import AdminPrincipal
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

DONE = {
    "granted": "The role is granted.",
    "revoked": "The role is revoked.",
    "blocked": "The role is revoked and blocked: no rule grants it to this account until "
               "it is unblocked.",
    "unblocked": "The block is lifted: rules may grant the role again at the next login.",
}


def _text(form: object, name: str, limit: int = 500) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value.strip()[:limit] if isinstance(value, str) else ""


def _required(form: object) -> tuple[str, str]:
    role, reason = _text(form, "role", 200), _text(form, "reason")
    if not role:
        raise AdminRefused(400, "a role is required")
    if not reason:
        raise AdminRefused(400, "a reason is required")
    return role, reason


async def _tenant(request: Request, account_id: str) -> str:
    return await call(console.account_tenant, ctx_of(request), account_id)


async def _grant_form(request: Request) -> tuple[AdminPrincipal, FormData, str, str]:
    """(admin, CSRF-checked form, account id, its tenant) of a grant form, the admin checked
    against that tenant before anything is read from the form."""
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    account_id = request.path_params["account_id"]
    tenant = await _tenant(request, account_id)
    check_tenant(principal, tenant)
    return principal, form, account_id, tenant


def _back(account_id: str, done: str) -> Response:
    return redirect(f"/admin/users/{quote(account_id, safe='')}?done={done}#roles")


async def add_grant(request: Request) -> Response:
    principal, form, account_id, tenant = await _grant_form(request)
    role, reason = _required(form)
    days = _text(form, "expires_in_days", 10)
    if days and (not digits(days) or not 1 <= int(days) <= accounts.MAX_GRANT_DAYS):
        raise AdminRefused(400, f"expires in: a whole number of days, 1 to "
                                f"{accounts.MAX_GRANT_DAYS}")
    await call(accounts.grant_role, ctx_of(request), tenant, account_id, role, reason=reason,
               actor=principal.actor, expires_in_days=int(days) if days else None)
    return _back(account_id, "granted")


async def revoke_grant(request: Request) -> Response:
    """From the user page or an access-review row (``from=review`` returns there)."""
    principal, form, account_id, tenant = await _grant_form(request)
    role, reason = _required(form)
    block = _text(form, "block") == "on"
    await call(accounts.revoke_role, ctx_of(request), tenant, account_id, role,
               reason=reason, actor=principal.actor, block=block)
    done = "blocked" if block else "revoked"
    if _text(form, "from") == "review":
        return redirect(f"/admin/access-review?tenant={quote(tenant)}&done={done}")
    return _back(account_id, done)


async def unblock(request: Request) -> Response:
    principal, form, account_id, tenant = await _grant_form(request)
    role, reason = _required(form)
    await call(accounts.unblock_role, ctx_of(request), tenant, account_id, role,
               reason=reason, actor=principal.actor)
    return _back(account_id, "unblocked")


async def access_review(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    rows = await call(audit_export.access_review_rows, ctx_of(request), tenant)
    return render(request, "admin/access_review.html", principal, tenant=tenant, rows=rows,
                  flash=DONE.get(request.query_params.get("done", "")))


ROUTES = [
    ("/admin/users/{account_id}/grants/add", add_grant, ["POST"]),
    ("/admin/users/{account_id}/grants/revoke", revoke_grant, ["POST"]),
    ("/admin/users/{account_id}/grants/unblock", unblock, ["POST"]),
    ("/admin/access-review", access_review, ["GET"]),
]
