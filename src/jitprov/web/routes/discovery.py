"""Home-realm discovery: ``GET /sso/discover`` (a form with one email field) and
``POST /sso/discover`` (a 303 to the login of the connection the email's domain maps to, with
``login_hint`` and ``return_to``).

The POST changes nothing on the server (the login it leads to is what ``GET
/sso/{c}/login`` starts for anyone), so like ``POST /logout`` it has no CSRF token; a POST
another origin makes the browser send is refused all the same (403), so no other site can
steer a visitor's sign-in. The form is bounded (:data:`MAX_FORM_BYTES`) before it is parsed.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.services.discovery import discover
from jitprov.services.sessions import safe_return_to
from jitprov.web.errors import render_error
from jitprov.web.routes.common import ctx_of, same_origin, templates_of

#: an email (320 characters at most, percent-encoded up to 9 bytes each) and a return path
MAX_FORM_BYTES = 8 * 1024
NO_STORE = {"Cache-Control": "no-store"}


async def page(request: Request) -> Response:
    return templates_of(request).TemplateResponse(
        request, "discover.html",
        {"return_to": safe_return_to(request.query_params.get("return_to"),
                                     ctx_of(request).return_hosts)},
        headers=NO_STORE)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput("send the sign-in form (an email address)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInput("the form is too large: enter one email address")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=8, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the form could not be read: enter one email address") from exc
    return {name: values[0] for name, values in fields.items() if values}


async def find(request: Request) -> Response:
    if not same_origin(request):
        return render_error(request, templates_of(request), 403, "cross_site",
                            "this sign-in form was sent from another site; use the form of "
                            "this site", headers=NO_STORE)
    form = await _form(request)
    found = await run_in_threadpool(discover, ctx_of(request), form.get("email", ""))
    target = f"/sso/{quote(found.connection, safe='')}/login?" + urlencode(
        {"return_to": safe_return_to(form.get("return_to"), ctx_of(request).return_hosts),
         "login_hint": found.login_hint})
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


ROUTES = [
    ("/sso/discover", page, ["GET"]),
    ("/sso/discover", find, ["POST"]),
]
