"""The one place that renders errors: HTML for browsers, JSON for /me and /api.

Nothing here ever shows a traceback, a token or an assertion; every page carries the request id
so an admin can find the audit event.
"""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.templating import Jinja2Templates

from jitprov.core.errors import (
    Conflict,
    DatabaseNotReady,
    InvalidInput,
    JitprovError,
    MappingError,
    NotFound,
    RaceLost,
)
from jitprov.core.text import safe_tree
from jitprov.services.common import LoginRefused
from jitprov.web.framing import FRAMING_HEADERS
from jitprov.web.i18n import N_

log = logging.getLogger("jitprov.web")

STATUS: list[tuple[type[JitprovError], int]] = [
    (MappingError, 422),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (RaceLost, 409),  # still lost after the service's retries: concurrent writes, try again
    (DatabaseNotReady, 503),
]

# translated when the page renders (web/i18n.py)
TITLES = {400: N_("The sign-in could not be completed"), 403: N_("Access refused"),
          404: N_("Not found"), 409: N_("Conflict"), 422: N_("Invalid input"),
          429: N_("Too many attempts"), 503: N_("Service unavailable"),
          500: N_("Something went wrong")}
OTHER_TITLE = N_("Error")
# what a refusal means for the person reading it, in their language (the detail that follows
# is the service's own words, in English, for the administrator)
ADVICE = {
    "login_expired": N_("The sign-in took too long or was already used. Start again from the "
                        "start page."),
    "replay": N_("The sign-in took too long or was already used. Start again from the start "
                 "page."),
    "login_foreign": N_("This sign-in was started in another browser or window. Start again "
                        "here."),
    "break_glass_refused": N_("The emergency code was not accepted. Ask the administrators "
                              "for a new one."),
    "connection_disabled": N_("Signing in through this organisation is switched off. Ask "
                              "your administrator."),
    "busy": N_("Many sign-ins happened at once. Try again in a moment."),
    "unknown_domain": N_("No organisation signs in here with this email address. Check it, "
                         "or ask your administrator."),
    "account_inactive": N_("Your account is not active. Ask your administrator."),
    "denied_by_rule": N_("Your organisation's rules do not let this account sign in here. "
                         "Ask your administrator."),
    "email_in_use": N_("An account with your email address already exists: an administrator "
                       "must link it to you."),
    "email_ambiguous": N_("An account with your email address already exists: an "
                          "administrator must link it to you."),
    "email_unverified": N_("Your identity provider has not verified your email address. "
                           "Verify it there, or ask your administrator."),
    "pending_link": N_("An administrator must approve linking this sign-in to your existing "
                       "account. Try again later."),
    "internal_error": N_("Something went wrong on our side. Try again; if it happens again, "
                         "give the request id below to your administrator."),
    "database_not_ready": N_("The service is busy. Try again in a moment."),
    "database_timeout": N_("The service is busy. Try again in a moment."),
    # passkeys (shown by static/passkeys.js from the JSON error's code)
    "unknown_passkey": N_("This passkey is not registered here. Sign in through your "
                          "organisation, then add it."),
    "challenge_expired": N_("That took too long. Try again."),
    "already_registered": N_("This passkey is already registered."),
}
#: the codes whose advice the passkey pages carry for their script
PASSKEY_ADVICE = ("account_inactive", "unknown_passkey", "challenge_expired",
                  "already_registered", "busy")


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/me", "/scim/")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def render_error(request: Request, templates: Jinja2Templates, status: int, code: str,
                 message: str, headers: dict[str, str] | None = None) -> Response:
    request_id = getattr(request.state, "request_id", None)
    if wants_json(request):
        return JSONResponse({"error": code, "message": message, "request_id": request_id},
                            status_code=status, headers=headers)
    # the anti-framing headers here too: a 500 page leaves through Starlette's outermost
    # error middleware, past the NoFraming middleware
    return templates.TemplateResponse(request, "error.html", {
        "title": TITLES.get(status, OTHER_TITLE), "advice": ADVICE.get(code),
        "message": message, "code": code,
        "request_id": request_id}, status_code=status,
        headers={**FRAMING_HEADERS, **(headers or {})})


def install(app: object, templates: Jinja2Templates) -> None:
    """Register the handlers on a Starlette/FastAPI app."""
    from starlette.applications import Starlette

    assert isinstance(app, Starlette)  # noqa: S101

    async def on_jitprov_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, JitprovError)  # noqa: S101
        status = next((s for cls, s in STATUS if isinstance(exc, cls)), 400)
        message = exc.reason if isinstance(exc, LoginRefused) else str(exc)
        if isinstance(exc, LoginRefused):
            status = exc.status
        headers = None
        if isinstance(exc, DatabaseNotReady):  # the detail is for the server log only
            log.error("database not ready: %s", exc)
            message = "the service is temporarily unavailable; try again in a moment"
            headers = {"Retry-After": str(exc.retry_after)}
        return render_error(request, templates, status, exc.code, message, headers)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101
        return render_error(request, templates, exc.status_code, "http_error", str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": getattr(request.state,
                                                                      "request_id", None)})
        return render_error(request, templates, 500, "internal_error",
                            "an unexpected error occurred; the administrator can find it in the "
                            "server log by its request id")

    async def on_invalid_request(request: Request, exc: Exception) -> Response:
        """FastAPI's validation errors, without the input it would echo (which may be huge,
        or hold text no response can encode): where and what, never the value."""
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        details = [{"loc": [str(part)[:100] for part in error.get("loc", ())][:10],
                    "msg": str(error.get("msg", ""))[:200],
                    "type": str(error.get("type", ""))[:100]}
                   for error in exc.errors()[:20]]
        return JSONResponse(safe_tree({"error": "invalid_input", "detail": details,
                                       "request_id": getattr(request.state, "request_id",
                                                             None)}),
                            status_code=422)

    app.add_exception_handler(JitprovError, on_jitprov_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(Exception, on_unexpected)
