"""SP-initiated login: ``GET /sso/{connection}/login`` and the per-protocol callbacks."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.services.login import (
    LoginState,
    hash_token,
    provision_on_login,
    record_login_failure,
)
from jitprov.services.oidc_login import complete_oidc_login, connection_config, start_oidc_login
from jitprov.services.sessions import begin_login, check_usable
from jitprov.web.routes.common import (
    SESSION_COOKIE,
    clear_login_cookie,
    ctx_of,
    login_cookie_name,
    set_login_cookie,
    set_session_cookie,
    settings_of,
)


def _start_mock(request: Request, slug: str, return_to: str | None,
                nonce: str) -> tuple[str, str]:
    state, conn = begin_login(ctx_of(request), slug, return_to, {"browser": hash_token(nonce)},
                              dev_mode=settings_of(request).dev_mode)
    return state, f"/dev/idp/{conn.slug}?{urlencode({'state': state})}"


def _start_oidc(request: Request, slug: str, return_to: str | None,
                nonce: str) -> tuple[str, str]:
    return start_oidc_login(ctx_of(request), slug, return_to, browser_nonce=nonce,
                            base_url=settings_of(request).base_url)


#: how each connection kind starts a login: (state, where to send the browser)
LOGIN_STARTERS: dict[str, Callable[[Request, str, str | None, str], tuple[str, str]]] = {
    "mock": _start_mock,
    "oidc": _start_oidc,
}


async def login(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    nonce = secrets.token_urlsafe(16)

    def start() -> tuple[str, str]:
        conn = ctx.connections.get(slug)
        check_usable(conn, dev_mode=settings_of(request).dev_mode)
        starter = LOGIN_STARTERS.get(conn.kind)
        if starter is None:
            raise InvalidInput(f"connection {conn.slug} of kind {conn.kind} has no login "
                               "handler")
        return starter(request, slug, request.query_params.get("return_to"), nonce)

    state, location = await run_in_threadpool(start)
    response = RedirectResponse(location, status_code=303)
    set_login_cookie(request, response, state, nonce)
    return response


async def oidc_callback(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    params = {k: v for k, v in request.query_params.items()
              if k in ("code", "state", "iss", "error", "error_description")}
    state = params.get("state", "")
    result = await run_in_threadpool(
        lambda: complete_oidc_login(
            ctx, slug, params, browser=request.cookies.get(login_cookie_name(state)),
            base_url=settings_of(request).base_url,
            request_id=getattr(request.state, "request_id", None),
            user_agent=request.headers.get("user-agent"),
            previous_session=request.cookies.get(SESSION_COOKIE)))
    response = RedirectResponse(result.return_to, status_code=303)
    clear_login_cookie(request, response, state)
    if result.session_token:
        set_session_cookie(request, response, result.session_token)
    return response


async def oidc_jwks(request: Request) -> Response:
    """The public key of a private_key_jwt connection, for the IdP to fetch."""
    slug = request.path_params["connection"]
    conn = await run_in_threadpool(ctx_of(request).connections.get, slug)
    config = connection_config(conn)
    keys = [config.client_public_jwk] if config.client_public_jwk else []
    return JSONResponse({"keys": keys}, headers={"Cache-Control": "max-age=300"})


async def mock_callback(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    form = await request.form()
    state = str(form.get("state", ""))
    assertion = str(form.get("assertion", ""))
    settings = settings_of(request)
    request_id = getattr(request.state, "request_id", None)

    def finish() -> tuple[str, str | None]:
        conn = ctx.connections.get(slug)
        check_usable(conn, dev_mode=settings.dev_mode)
        key = ctx.secretbox.open(conn.secrets).get("signing_key", "")
        try:
            identity = mock.verify_assertion(
                assertion, key=key, issuer=mock.issuer_for(settings.base_url, slug),
                audience=slug, state=state)
        except InvalidInput as exc:
            record_login_failure(ctx, slug, "invalid_response", str(exc),
                                 request_id=request_id)
            raise
        result = provision_on_login(
            ctx, slug, identity,
            login=LoginState(state, request.cookies.get(login_cookie_name(state))),
            request_id=request_id,
            user_agent=request.headers.get("user-agent"),
            previous_session=request.cookies.get(SESSION_COOKIE))
        return result.return_to, result.session_token

    return_to, token = await run_in_threadpool(finish)
    response = RedirectResponse(return_to, status_code=303)
    clear_login_cookie(request, response, state)
    if token:
        set_session_cookie(request, response, token)
    return response


ROUTES = [
    ("/sso/{connection}/login", login, ["GET"]),
    ("/sso/{connection}/mock/callback", mock_callback, ["POST"]),
    ("/sso/{connection}/oidc/callback", oidc_callback, ["GET"]),
    ("/sso/{connection}/oidc/jwks.json", oidc_jwks, ["GET"]),
]
