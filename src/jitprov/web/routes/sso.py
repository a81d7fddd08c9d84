"""SP-initiated login: ``GET /sso/{connection}/login`` and the per-protocol callbacks."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.protocols import mock
from jitprov.services.login import provision_on_login
from jitprov.services.sessions import begin_login, finish_login_request
from jitprov.web.routes.common import SESSION_COOKIE, ctx_of, set_session_cookie, settings_of


async def login(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    state, conn = await run_in_threadpool(
        lambda: begin_login(ctx, slug, request.query_params.get("return_to"),
                            dev_mode=settings_of(request).dev_mode))
    if conn.kind == "mock":
        return RedirectResponse(f"/dev/idp/{conn.slug}?{urlencode({'state': state})}",
                                status_code=303)
    raise InvalidInput(f"connection {conn.slug} of kind {conn.kind} has no login handler")


async def mock_callback(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    form = await request.form()
    state = str(form.get("state", ""))
    assertion = str(form.get("assertion", ""))

    def finish() -> tuple[str, str | None]:
        conn, pending = finish_login_request(ctx, slug, state,
                                             dev_mode=settings_of(request).dev_mode)
        key = ctx.secretbox.open(conn.secrets).get("signing_key", "")
        identity = mock.verify_assertion(
            assertion, key=key, issuer=mock.issuer_for(settings_of(request).base_url, slug),
            audience=slug, state=state)
        result = provision_on_login(
            ctx, slug, identity, request_id=getattr(request.state, "request_id", None),
            user_agent=request.headers.get("user-agent"),
            previous_session=request.cookies.get(SESSION_COOKIE))
        return pending.return_to, result.session_token

    return_to, token = await run_in_threadpool(finish)
    response = RedirectResponse(return_to, status_code=303)
    if token:
        set_session_cookie(request, response, token)
    return response


ROUTES = [
    ("/sso/{connection}/login", login, ["GET"]),
    ("/sso/{connection}/mock/callback", mock_callback, ["POST"]),
]
