"""Logout propagation from the IdP: the OIDC back-channel logout receiver, and the page an
OIDC provider sends the browser to after RP-initiated logout (``POST /logout`` starts it).

``POST /sso/{connection}/backchannel-logout`` answers as Back-Channel Logout 1.0 section 2.8
says: 200 once the sessions the logout token names are revoked; 400 with an OAuth error
object (``invalid_request`` and a description) for anything else, which revokes nothing.
Every answer is ``Cache-Control: no-store``.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.services.login.oidc_logout import receive_backchannel_logout
from jitprov.services.login.saml_logout import SloAnswer, receive_slo
from jitprov.web.errors import render_error
from jitprov.web.routes.common import clear_session_cookie, ctx_of, settings_of, templates_of

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: a logout token is at most 64 KiB (protocols/oidc/flow.py MAX_TOKEN_BYTES), form-encoded
MAX_FORM_BYTES = 70 * 1024


async def _bounded_form(request: Request, *, limit: int, max_fields: int,
                        what: str, how: str) -> dict[str, list[str]]:
    """The fields of an urlencoded form of at most ``limit`` bytes (read no further), or
    InvalidInput naming ``what`` the form should carry and ``how`` it is sent."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput(f"{what} is sent as {how}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidInput(f"the request is too large for {what}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidInput(f"the request is too large for {what}")
    try:
        return parse_qs(body.decode("ascii"), max_num_fields=max_fields)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("the request is not a readable form") from exc


async def _logout_token(request: Request) -> str | None:
    """The ``logout_token`` of an urlencoded form of at most MAX_FORM_BYTES. Raises
    InvalidInput for anything else."""
    fields = await _bounded_form(request, limit=MAX_FORM_BYTES, max_fields=4,
                                 what="a logout token",
                                 how="an application/x-www-form-urlencoded form")
    values = fields.get("logout_token", [])
    if len(values) > 1:
        raise InvalidInput("the form has more than one logout_token")
    return values[0] if values else None


async def backchannel_logout(request: Request) -> Response:
    """Back-Channel Logout 1.0: the provider POSTs ``logout_token``."""
    slug = request.path_params["connection"]
    request_id = getattr(request.state, "request_id", None)
    try:
        token = await _logout_token(request)
        await run_in_threadpool(receive_backchannel_logout, ctx_of(request), slug, token,
                                request_id=request_id)
    except JitprovError as exc:
        return JSONResponse({"error": "invalid_request", "error_description": str(exc),
                             "code": exc.code, "request_id": request_id},
                            status_code=400, headers=NO_STORE)
    return Response(status_code=200, headers=NO_STORE)


async def signed_out(request: Request) -> Response:
    """Where the provider sends the browser after RP-initiated logout. It changes nothing:
    the session ended and its cookie was cleared by ``POST /logout`` before the browser left
    (a GET any site can trigger must not sign anyone out), so any ``state`` is accepted."""
    return templates_of(request).TemplateResponse(
        request, "signed_out.html", {}, headers=NO_STORE)


# -- SAML Single Logout ----------------------------------------------------------------------

#: a logout message is a few KB; the connection's ``max_response_bytes`` is checked after
MAX_SLO_FORM_BYTES = 512 * 1024


async def _slo_form(request: Request) -> dict[str, str]:
    """The SAMLRequest/SAMLResponse and RelayState of an urlencoded form of at most
    MAX_SLO_FORM_BYTES. Raises InvalidInput for anything else."""
    fields = await _bounded_form(
        request, limit=MAX_SLO_FORM_BYTES, max_fields=8, what="a SAML logout message",
        how="an application/x-www-form-urlencoded form (HTTP-POST binding)")
    if any(len(values) > 1 for values in fields.values()):
        raise InvalidInput("the form repeats a field")
    return {name: values[0] for name, values in fields.items()
            if name in ("SAMLRequest", "SAMLResponse", "RelayState")}


async def saml_slo(request: Request) -> Response:
    """The SP's SingleLogoutService: HTTP-Redirect (GET, the query as received) and
    HTTP-POST. A LogoutRequest from the IdP ends the sessions it names and is answered with
    a signed LogoutResponse (a redirect, or an auto-submitting form); the IdP's
    LogoutResponse to our request ends on the signed-out page. A message that cannot be
    verified gets a readable 400 page. The browser's session cookie is cleared once the
    logout went through (never for a refused message: that would be a logout CSRF)."""
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    request_id = getattr(request.state, "request_id", None)
    base_url = settings_of(request).base_url
    try:
        if request.method == "GET":
            query = request.url.query
            answer: SloAnswer = await run_in_threadpool(
                lambda: receive_slo(ctx, slug, raw_query=query, base_url=base_url,
                                    request_id=request_id))
        else:
            form = await _slo_form(request)
            answer = await run_in_threadpool(
                lambda: receive_slo(ctx, slug, form=form, base_url=base_url,
                                    request_id=request_id))
    except InvalidInput as exc:
        return render_error(request, templates_of(request), 400, exc.code, str(exc),
                            headers=NO_STORE)
    response = _slo_response(request, answer)
    if answer.signed_out:
        clear_session_cookie(request, response)
    return response


def _slo_response(request: Request, answer: SloAnswer) -> Response:
    if answer.redirect_url is not None:
        return RedirectResponse(answer.redirect_url, status_code=303, headers=NO_STORE)
    if answer.post_url is not None:
        target = urlsplit(answer.post_url)
        csp = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
               f"form-action {target.scheme}://{target.netloc}; base-uri 'none'; "
               "frame-ancestors 'none'")
        return templates_of(request).TemplateResponse(
            request, "saml_post.html", {"action": answer.post_url, "fields": answer.fields},
            headers={**NO_STORE, "Content-Security-Policy": csp,
                     "Referrer-Policy": "no-referrer"})
    return templates_of(request).TemplateResponse(
        request, "signed_out.html", {"idp_unconfirmed": not answer.idp_confirmed},
        headers=NO_STORE)


ROUTES = [
    ("/sso/{connection}/saml/slo", saml_slo, ["GET", "POST"]),
    ("/sso/{connection}/backchannel-logout", backchannel_logout, ["POST"]),
    ("/sso/{connection}/oidc/signed-out", signed_out, ["GET"]),
]
