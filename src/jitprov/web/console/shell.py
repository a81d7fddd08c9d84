"""The admin console's shell: who is signed in, the page frame, CSRF, security headers.

Every console page starts with ``principal = await require_admin(request)`` (no admin
session: the browser is sent to ``/admin/sign-in``), renders with
``render(request, "admin/x.html", principal, **context)`` (the template extends
``admin/base.html`` and fills ``title`` and ``content``), and reads a POST with
``form = await form_with_csrf(request)`` (a wrong or missing ``csrf_token`` field: 403).
``tenant_of(request, principal)`` is the tenant a page works on (``?tenant=``), refused
(403) when this admin may not administer it; ``check_tenant`` does the same for a tenant
found from a record (an account, a request).

CSRF: the token is an HMAC of the admin session id under the server's secret key (see
``services.console.csrf_token``): bound to the session, valid on every node, nothing to
store; on top of it the admin cookie is ``SameSite=Strict`` and a POST whose ``Origin`` or
``Sec-Fetch-Site`` says another site is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitprov.core.errors import JitprovError
from jitprov.services import console
from jitprov.services.console import AdminPrincipal, tokens_match
from jitprov.web import cookies
from jitprov.web.errors import STATUS
from jitprov.web.routes.common import (
    ctx_of,
    same_origin,
    secure_cookies,
    settings_of,
    templates_of,
)

T = TypeVar("T")

__all__ = ["ADMIN_COOKIE", "NAV", "AdminPrincipal", "AdminRefused", "SignInRequired", "call",
           "check_tenant", "form_with_csrf", "install", "render", "require_admin", "tenant_of"]

ADMIN_COOKIE = "jitprov_admin"
ADMIN_PATH = "/admin"
SIGN_IN_PATH = "/admin/sign-in"

#: (label, path) of the console's navigation, in order
NAV: tuple[tuple[str, str], ...] = (
    ("Dashboard", "/admin"),
    ("Users", "/admin/users"),
    ("Approvals", "/admin/approvals"),
    ("Access review", "/admin/access-review"),
    ("Links", "/admin/links"),
    ("Audit", "/admin/audit"),
    ("Connections", "/admin/connections"),
    ("SCIM tokens", "/admin/scim-tokens"),
    ("Webhooks", "/admin/webhooks"),
)

#: on every /admin response (errors and redirects included)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SignInRequired(Exception):
    """No valid admin session: rendered as a redirect to ``/admin/sign-in``."""


class AdminRefused(Exception):
    """A console request refused with ``status`` (403 CSRF or foreign tenant, 404...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _csrf_key(request: Request) -> str:
    return settings_of(request).secret_key


async def require_admin(request: Request) -> AdminPrincipal:
    """The signed-in admin, or raise SignInRequired."""
    cached = getattr(request.state, "admin_principal", None)
    if isinstance(cached, AdminPrincipal):
        return cached
    principal = await run_in_threadpool(
        console.authenticate, ctx_of(request), request.cookies.get(ADMIN_COOKIE),
        csrf_key=_csrf_key(request))
    if principal is None:
        raise SignInRequired
    request.state.admin_tenants = await run_in_threadpool(
        console.tenant_slugs, ctx_of(request), principal)
    request.state.admin_principal = principal
    return principal


def digits(value: str) -> bool:
    """Whether ``value`` is ASCII digits only (``str.isdigit`` also takes "²", which ``int``
    then refuses)."""
    return value.isascii() and value.isdigit()


async def read_form(request: Request) -> FormData:
    """The urlencoded or multipart form (at most 64 fields, no files); 400 when unreadable."""
    try:
        return await request.form(max_files=0, max_fields=64)
    except Exception as exc:  # multipart parse errors have no common base class
        raise AdminRefused(400, "the form could not be read") from exc


async def form_with_csrf(request: Request) -> FormData:
    """The POSTed form of a signed-in admin, after checking its ``csrf_token`` field and
    where it comes from. Raises SignInRequired, AdminRefused(403)."""
    principal = await require_admin(request)
    if not same_origin(request):
        raise AdminRefused(403, "this form was sent from another site")
    form = await read_form(request)
    given = form.get("csrf_token")
    if not tokens_match(principal.csrf_token, given if isinstance(given, str) else None):
        raise AdminRefused(403, "the form's security token is missing or stale; reload the "
                                "page and try again")
    return form


def check_tenant(principal: AdminPrincipal, tenant: str) -> None:
    """Raise AdminRefused(403) unless this admin administers ``tenant``."""
    if not principal.may_administer(tenant):
        raise AdminRefused(403, "you do not administer this tenant")


def tenant_of(request: Request, principal: AdminPrincipal,
              form: Mapping[str, Any] | None = None) -> str:
    """The tenant a page works on: ``tenant`` of the form or query, else the admin's first
    tenant. Raises AdminRefused (403 for a tenant it does not administer, 404 when there is
    no tenant at all)."""
    chosen = (form or {}).get("tenant") or request.query_params.get("tenant")
    slugs: list[str] = list(getattr(request.state, "admin_tenants", None) or [])
    if isinstance(chosen, str) and chosen:
        check_tenant(principal, chosen)
        if chosen not in slugs:
            raise AdminRefused(404, f"no tenant {chosen!r}")
        return chosen
    if not slugs:
        raise AdminRefused(404, "there is no tenant yet: create one with "
                                "`jitprov tenant create SLUG`")
    return slugs[0]


def _nav(path: str) -> list[dict[str, object]]:
    def active(href: str) -> bool:
        return path == href if href == ADMIN_PATH else path == href or \
            path.startswith(href + "/")
    return [{"label": label, "href": href, "current": active(href)} for label, href in NAV]


def render(request: Request, template_name: str, principal: AdminPrincipal | None,
           status_code: int = 200, **context: object) -> HTMLResponse:
    """A console page: ``template_name`` (extends ``admin/base.html``) with ``principal``,
    ``csrf_token``, ``nav``, ``tenants`` (the tenants this admin may choose among) and
    whatever ``context`` gives (``tenant``: the page's tenant, shown in the switcher)."""
    tenants: list[str] = list(getattr(request.state, "admin_tenants", None) or [])
    response = templates_of(request).TemplateResponse(request, template_name, {
        "principal": principal, "csrf_token": principal.csrf_token if principal else "",
        "nav": _nav(request.url.path) if principal else [], "tenants": tenants,
        **context}, status_code=status_code)
    assert isinstance(response, HTMLResponse)  # noqa: S101 - TemplateResponse is one
    return response


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (blocking) service call in the thread pool; its NotFound, InvalidInput,
    Conflict... become AdminRefused with their status, rendered as a console page."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except JitprovError as exc:
        status = next((s for cls, s in STATUS if isinstance(exc, cls)), 400)
        if status >= 500:
            raise
        raise AdminRefused(status, str(exc)) from exc


def set_admin_cookie(request: Request, response: Response, token: str) -> None:
    """Strict cookie: HttpOnly, SameSite=Strict, Secure under https, path /admin, for the
    admin session's lifetime."""
    cookies.set_cookie(response, ADMIN_COOKIE, token,
                       max_age=int(console.ADMIN_SESSION_TTL.total_seconds()),
                       samesite="strict", secure=secure_cookies(request), path=ADMIN_PATH)


def clear_admin_cookie(request: Request, response: Response) -> None:
    cookies.delete_cookie(response, ADMIN_COOKIE, samesite="strict",
                          secure=secure_cookies(request), path=ADMIN_PATH)


def redirect(location: str) -> RedirectResponse:
    """303 See Other (after a POST, the browser GETs ``location``)."""
    return RedirectResponse(location, status_code=303)


def when(value: datetime | None) -> str:
    """A UTC instant as people read it: ``2026-11-28 07:00 UTC``."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


_CODE_SPAN = re.compile(r"`([^`]+)`")


def code_spans(text: str | None) -> Markup:
    """Plain text whose `backticked` names (as ``services.console`` writes them) become
    ``<code>`` elements; everything else is escaped."""
    escaped = str(escape(text or ""))
    return Markup(_CODE_SPAN.sub(r"<code>\1</code>", escaped))  # noqa: S704 escaped above


class AdminSecurityHeaders:
    """Pure ASGI middleware: the console's security headers on every ``/admin`` response,
    whoever produced it (a page, a redirect, an error handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/")):
            await self.app(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {name for name, _ in extra}]
                message["headers"] = headers + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: Any) -> None:
    """Register the console's exception handlers, template filters and security headers on
    the app (``web/app.py`` calls it once)."""

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        target = SIGN_IN_PATH
        if request.method == "GET" and request.url.path != ADMIN_PATH:
            target += "?next=" + quote(request.url.path, safe="/")
        return redirect(target)

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AdminRefused)  # noqa: S101
        principal = getattr(request.state, "admin_principal", None)
        return render(request, "admin/error.html",
                            principal if isinstance(principal, AdminPrincipal) else None,
                            status_code=exc.status, status=exc.status, message=exc.message,
                            request_id=getattr(request.state, "request_id", None))

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(AdminRefused, on_refused)
    templates = app.state.templates
    templates.env.filters["when"] = when
    templates.env.filters["code_spans"] = code_spans
    app.add_middleware(AdminSecurityHeaders)
