"""Users: search, and one user's page (identities, profile and roles with their provenance,
pending grants, sessions and devices, passkeys, audit trail), with deactivate/reactivate and
revocations through the services."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import accounts, console, devices, passkeys
from jitprov.services.console import USER_STATUSES
from jitprov.web.console import grants
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
    "deactivated": "The account is deactivated; its sessions ended.",
    "suspended": "The account is suspended; its sessions ended.",
    "active": "The account is active again.",
    "session": "The session is revoked.",
    "passkey": "The passkey is revoked; the sessions opened with it ended.",
    "device": "The device is revoked; its sessions ended.",
    **grants.DONE,
}


def _text(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value.strip() if isinstance(value, str) else ""


def _int(value: str) -> int:
    if not digits(value) or len(value) > 10:
        raise AdminRefused(400, "a number is expected")
    return int(value)


async def list_users(request: Request) -> Response:
    principal = await require_admin(request)
    tenant = tenant_of(request, principal)
    params = request.query_params
    query, status, role = params.get("q", ""), params.get("status", ""), params.get("role", "")
    page = await call(console.search_users, ctx_of(request), tenant, query=query,
                      status=status, role=role, cursor=params.get("cursor"))
    return render(request, "admin/users.html", principal, tenant=tenant, page=page,
                  q=query, status=status, role=role, statuses=USER_STATUSES,
                  first_page=not params.get("cursor"))


async def _account_tenant(request: Request, account_id: str) -> str:
    return await call(console.account_tenant, ctx_of(request), account_id)


async def show_user(request: Request) -> Response:
    principal = await require_admin(request)
    account_id = request.path_params["account_id"]
    tenant = await _account_tenant(request, account_id)
    check_tenant(principal, tenant)
    detail = await call(console.user_detail, ctx_of(request), account_id)
    profile_sources = detail.view.account.profile_sources
    profile = [(name, value, console.describe_profile_source(profile_sources.get(name)))
               for name, value in sorted(detail.view.account.profile.items())]
    grants = [(g, console.describe_grant(g)) for g in detail.grants]
    return render(request, "admin/user.html", principal, tenant=tenant, detail=detail,
                  account=detail.view.account, profile=profile, grants=grants,
                  flash=DONE.get(request.query_params.get("done", "")))


async def set_status(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    account_id = request.path_params["account_id"]
    check_tenant(principal, await _account_tenant(request, account_id))
    status, reason = _text(form, "status"), _text(form, "reason")
    if status not in USER_STATUSES:
        raise AdminRefused(400, f"unknown status {status!r}")
    if not reason:
        raise AdminRefused(400, "a reason is required")
    await call(accounts.set_account_status, ctx_of(request), account_id, status,
               reason=reason[:500], actor=principal.actor)
    return redirect(f"/admin/users/{account_id}?done={status}")


async def revoke_session(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    account_id = request.path_params["account_id"]
    check_tenant(principal, await _account_tenant(request, account_id))
    await call(console.revoke_user_session, ctx_of(request), account_id,
               _text(form, "session_id"), actor=principal.actor,
               request_id=getattr(request.state, "request_id", None))
    return redirect(f"/admin/users/{account_id}?done=session")


async def revoke_passkey(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    account_id = request.path_params["account_id"]
    check_tenant(principal, await _account_tenant(request, account_id))
    await call(passkeys.revoke_passkey, ctx_of(request), _int(_text(form, "passkey_id")),
               actor=principal.actor, owner=account_id,
               request_id=getattr(request.state, "request_id", None))
    return redirect(f"/admin/users/{account_id}?done=passkey")


async def revoke_device(request: Request) -> Response:
    principal = await require_admin(request)
    form = await form_with_csrf(request)
    account_id = request.path_params["account_id"]
    check_tenant(principal, await _account_tenant(request, account_id))
    device = await call(devices.get_device, ctx_of(request), _int(_text(form, "device_id")))
    check_tenant(principal, device.tenant_slug)
    await call(devices.revoke_device, ctx_of(request), device.id, actor=principal.actor)
    return redirect(f"/admin/users/{account_id}?done=device")


ROUTES = [
    ("/admin/users", list_users, ["GET"]),
    ("/admin/users/{account_id}", show_user, ["GET"]),
    ("/admin/users/{account_id}/status", set_status, ["POST"]),
    ("/admin/users/{account_id}/sessions/revoke", revoke_session, ["POST"]),
    ("/admin/users/{account_id}/passkeys/revoke", revoke_passkey, ["POST"]),
    ("/admin/users/{account_id}/devices/revoke", revoke_device, ["POST"]),
]
