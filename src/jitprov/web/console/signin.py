"""Signing in to the console and out: the one-time bootstrap link and SSO with the
``jitprov-admin`` role. Every sign-in opens an admin session (``shell.ADMIN_COOKIE``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from jitprov.services import admin, console
from jitprov.services.console import AdminSignInRefused, tokens_match
from jitprov.services.sessions import safe_return_to
from jitprov.web.console.shell import (
    AdminRefused,
    SignInRequired,
    clear_admin_cookie,
    form_with_csrf,
    read_form,
    redirect,
    render,
    require_admin,
    set_admin_cookie,
)
from jitprov.web.routes.common import SESSION_COOKIE, ctx_of, same_origin, settings_of


def _next(value: object) -> str:
    """Where to go after signing in: a console path only."""
    path = safe_return_to(value if isinstance(value, str) else None)
    return path if path == "/admin" or path.startswith("/admin/") else "/admin"


async def sign_in(request: Request) -> Response:
    """The sign-in page: SSO connections, and "continue" for an account signed in through
    SSO that holds the admin role (403 for one that does not)."""
    ctx = ctx_of(request)
    settings = settings_of(request)
    try:
        principal = await require_admin(request)
    except SignInRequired:
        principal = None
    if principal is not None:
        return redirect(_next(request.query_params.get("next")))
    user_cookie = request.cookies.get(SESSION_COOKIE)
    candidate = await run_in_threadpool(console.sso_candidate, ctx, user_cookie)
    connections = [c for c in await run_in_threadpool(admin.list_connections, ctx)
                   if c.enabled and (settings.dev_mode or c.kind != "mock")]
    context: dict[str, object] = {"connections": connections,
                                  "next": _next(request.query_params.get("next"))}
    status = 200
    if candidate is not None:
        if console.holds_admin_role(candidate, ctx.clock()):
            context.update(candidate=True,
                           candidate_name=candidate.account.profile.get("email")
                           or candidate.account.id,
                           candidate_tenant=candidate.tenant_slug,
                           sso_token=console.sso_continue_token(settings.secret_key,
                                                                      user_cookie or ""))
        else:
            status = 403
            context["refused"] = (
                f"You are signed in as {candidate.account.profile.get('email') or 'an account'}"
                f", which does not hold the {console.ADMIN_ROLE} role. Sign in with an "
                "administrator's account, or ask for the role.")
    return render(request, "admin/sign_in.html", None, status_code=status, **context)


async def sign_in_sso(request: Request) -> Response:
    """Open an admin session for the account of the SSO user session (POST from the sign-in
    page: CSRF token bound to that user session)."""
    ctx = ctx_of(request)
    settings = settings_of(request)
    if not same_origin(request):
        raise AdminRefused(403, "this form was sent from another site")
    form = await read_form(request)
    user_cookie = request.cookies.get(SESSION_COOKIE)
    given = form.get("csrf_token")
    expected = console.sso_continue_token(settings.secret_key, user_cookie or "")
    if not user_cookie or not tokens_match(expected, given if isinstance(given, str) else None):
        raise AdminRefused(403, "the form's security token is missing or stale; reload the "
                                "sign-in page and try again")
    try:
        opened = await run_in_threadpool(
            lambda: console.open_sso_session(
                ctx, user_cookie, csrf_key=settings.secret_key,
                user_agent=request.headers.get("user-agent"),
                request_id=getattr(request.state, "request_id", None)))
    except AdminSignInRefused as exc:
        raise AdminRefused(exc.status, str(exc)) from exc
    response = redirect(_next(form.get("next")))
    set_admin_cookie(request, response, opened.token)
    return response


async def bootstrap_page(request: Request) -> Response:
    """The page a bootstrap link opens; its script copies the code from the fragment into
    the form (a GET never spends the link: link previewers cannot burn it)."""
    return render(request, "admin/bootstrap.html", None)


async def bootstrap(request: Request) -> Response:
    ctx = ctx_of(request)
    settings = settings_of(request)
    if not same_origin(request):
        raise AdminRefused(403, "this form was sent from another site")
    form = await read_form(request)
    token = form.get("token")
    try:
        opened = await run_in_threadpool(
            lambda: console.open_bootstrap_session(
                ctx, token if isinstance(token, str) else "", csrf_key=settings.secret_key,
                user_agent=request.headers.get("user-agent"),
                request_id=getattr(request.state, "request_id", None)))
    except AdminSignInRefused as exc:
        return render(request, "admin/bootstrap.html", None, status_code=exc.status,
                      refused=str(exc))
    response = redirect("/admin")
    set_admin_cookie(request, response, opened.token)
    return response


async def sign_out(request: Request) -> Response:
    await form_with_csrf(request)
    principal = await require_admin(request)
    await run_in_threadpool(console.sign_out, ctx_of(request), principal)
    response = redirect("/admin/sign-in")
    clear_admin_cookie(request, response)
    return response


ROUTES = [
    ("/admin/sign-in", sign_in, ["GET"]),
    ("/admin/sign-in/sso", sign_in_sso, ["POST"]),
    ("/admin/bootstrap", bootstrap_page, ["GET"]),
    ("/admin/bootstrap", bootstrap, ["POST"]),
    ("/admin/sign-out", sign_out, ["POST"]),
]
