"""``/break-glass``: sign in with an emergency code when the IdP is unreachable."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.services import break_glass
from jitprov.web.routes.common import ctx_of, set_session_cookie, templates_of


async def page(request: Request) -> Response:
    return templates_of(request).TemplateResponse(request, "break_glass.html", {},
                                                  headers={"Cache-Control": "no-store"})


async def use(request: Request) -> Response:
    async with request.form() as form:  # closed after: a multipart file part is a temp file
        code = str(form.get("code", ""))
    session = await run_in_threadpool(
        lambda: break_glass.redeem(ctx_of(request), code,
                                   request_id=getattr(request.state, "request_id", None),
                                   user_agent=request.headers.get("user-agent")))
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(request, response, session.session_token)
    return response


ROUTES = [
    ("/break-glass", page, ["GET"]),
    ("/break-glass", use, ["POST"]),
]
