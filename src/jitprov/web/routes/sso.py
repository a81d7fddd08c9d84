"""SP-initiated login: ``GET /sso/{connection}/login`` and the per-protocol callbacks."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.services.login import (
    LoginState,
    hash_token,
    provision_on_login,
    record_login_failure,
)
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


async def login(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    nonce = secrets.token_urlsafe(16)
    state, conn = await run_in_threadpool(
        lambda: begin_login(ctx, slug, request.query_params.get("return_to"),
                            {"browser": hash_token(nonce)},
                            dev_mode=settings_of(request).dev_mode))
    if conn.kind == "mock":
        response = RedirectResponse(f"/dev/idp/{conn.slug}?{urlencode({'state': state})}",
                                    status_code=303)
    else:
        raise InvalidInput(f"connection {conn.slug} of kind {conn.kind} has no login handler")
    set_login_cookie(request, response, state, nonce)
    return response


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
]
