"""The landing page, ``GET /me``, ``POST /logout`` and the health check."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jitprov.services import devices, discovery
from jitprov.services.identity_tokens import published_keys
from jitprov.services.login.logout import sign_out_everywhere
from jitprov.web.errors import render_error
from jitprov.web.i18n import use_tenant_locale
from jitprov.web.routes.common import (
    SESSION_COOKIE,
    clear_session_cookie,
    ctx_of,
    identity_token_of,
    same_origin,
    settings_of,
    signed_in_of,
    templates_of,
)


async def home(request: Request) -> Response:
    """The signed-in account, or the way in: the email form of home-realm discovery once a
    domain is verified (and the demo IdP's button under ``jitprov dev``), else a button per
    enabled connection (``services/discovery.landing``)."""
    ctx = ctx_of(request)
    dev_mode = settings_of(request).dev_mode
    signed_in = await signed_in_of(request)
    choices = None if signed_in else await run_in_threadpool(
        lambda: discovery.landing(ctx, dev_mode=dev_mode))
    timezone: str | None = None
    if signed_in:
        policy = await run_in_threadpool(devices.get_policy, ctx, signed_in.view.tenant_slug)
        timezone = policy.timezone
        use_tenant_locale(request, policy.locale)
    return templates_of(request).TemplateResponse(request, "home.html", {
        "me": signed_in.as_me() if signed_in else None, "timezone": timezone,
        "connections": choices.connections if choices else [],
        "ask_email": bool(choices and choices.ask_email), "return_to": "/",
        "dev_mode": dev_mode})


async def me(request: Request) -> Response:
    signed_in = await signed_in_of(request)
    if signed_in is None:
        return JSONResponse({"error": "unauthenticated", "message": "no valid session"},
                            status_code=401, headers={"Cache-Control": "no-store"})
    return JSONResponse(signed_in.as_me(), headers={"Cache-Control": "no-store"})


async def me_token(request: Request) -> Response:
    """A short-lived signed identity token (ES256 JWT) for the signed-in account."""
    signed_in = await signed_in_of(request)
    if signed_in is None:
        return JSONResponse({"error": "unauthenticated", "message": "no valid session"},
                            status_code=401, headers={"Cache-Control": "no-store"})
    issued = await identity_token_of(request, signed_in.as_me())
    return JSONResponse({"token": issued.token, "token_type": "JWT",
                         "expires_in": issued.expires_in},
                        headers={"Cache-Control": "no-store"})


async def jwks(request: Request) -> Response:
    keys = await run_in_threadpool(published_keys, ctx_of(request))
    return JSONResponse(keys, headers={"Cache-Control": "max-age=60"})


async def logout(request: Request) -> Response:
    """End the session, then, for a connection whose IdP has a logout endpoint (OIDC
    RP-initiated logout), send the browser there to end its IdP session too; else home.
    Only from a page of this origin: the session cookie is SameSite=Lax,
    which a sibling subdomain's form still carries, so the browser's word on where the POST
    comes from is checked (there is no CSRF token: an application behind forward-auth posts
    here from its own pages, on jitprov's host)."""
    if not same_origin(request):
        return render_error(request, templates_of(request), 403, "cross_site",
                            "this sign-out was sent from another site; use the Sign out "
                            "button of this site")
    idp_logout = await run_in_threadpool(
        lambda: sign_out_everywhere(ctx_of(request), request.cookies.get(SESSION_COOKIE),
                                    base_url=settings_of(request).base_url))
    response = RedirectResponse(idp_logout or "/", status_code=303,
                                headers={"Cache-Control": "no-store"})
    clear_session_cookie(request, response)
    return response


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def favicon(_request: Request) -> Response:
    """Browsers that ask for ``/favicon.ico`` without reading the page's icon link."""
    return RedirectResponse("/static/favicon.svg", status_code=301,
                            headers={"Cache-Control": "max-age=86400"})


ROUTES = [
    ("/", home, ["GET"]),
    ("/me", me, ["GET"]),
    ("/me/token", me_token, ["GET"]),
    ("/.well-known/jwks.json", jwks, ["GET"]),
    ("/logout", logout, ["POST"]),
    ("/healthz", healthz, ["GET"]),
    ("/favicon.ico", favicon, ["GET"]),
]
