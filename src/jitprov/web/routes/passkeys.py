"""``/passkeys``: enrol, list and remove your passkeys; username-less sign-in with one.

The ceremonies are JSON endpoints called by ``static/passkeys.js`` (our CSP allows no inline
script); they accept ``application/json`` only, so a cross-site form cannot reach them, and the
session cookie is SameSite=Lax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.protocols.webauthn import RelyingParty
from jitprov.services import devices, passkeys
from jitprov.services.records import PasskeyRecord
from jitprov.web.i18n import use_tenant_locale
from jitprov.web.routes.common import (
    SESSION_COOKIE,
    ctx_of,
    same_origin,
    set_session_cookie,
    settings_of,
    signed_in_of,
    templates_of,
)

NO_STORE = {"Cache-Control": "no-store"}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'")
PAGE_HEADERS = {**NO_STORE, "Content-Security-Policy": PAGE_CSP, "Referrer-Policy": "no-referrer"}


def relying_party(request: Request) -> RelyingParty:
    return RelyingParty.from_base_url(settings_of(request).base_url)


def wrong_origin(request: Request) -> Response | None:
    """Passkeys work only on the RP's origin (a loopback base URL means ``localhost``): a page
    opened on another host name is sent there."""
    rp = relying_party(request)
    if request.url.hostname == rp.id:
        return None
    target = rp.origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(target, status_code=303, headers=NO_STORE)


async def json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise InvalidInput("send application/json")
    try:
        body = await request.json()
    except ValueError as exc:
        raise InvalidInput("the body is not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def credential_of(body: dict[str, Any]) -> dict[str, Any]:
    credential = body.get("credential")
    if not isinstance(credential, dict):
        raise InvalidInput("credential missing")
    return credential


def just_added(request: Request, mine: Sequence[PasskeyRecord]) -> PasskeyRecord | None:
    """The passkey named by ``?added=ID`` (where the enrolment sends the browser), if it is
    one of the signed-in account's: the page confirms it by name."""
    added = request.query_params.get("added", "")
    return next((p for p in mine if str(p.id) == added), None) if added else None


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def page(request: Request) -> Response:
    if (moved := wrong_origin(request)) is not None:
        return moved
    ctx = ctx_of(request)
    signed_in = await signed_in_of(request)
    if signed_in is None:
        return RedirectResponse("/passkeys/sign-in", status_code=303, headers=NO_STORE)
    mine = await run_in_threadpool(passkeys.list_passkeys, ctx, signed_in.view.account.id)
    policy = await run_in_threadpool(devices.get_policy, ctx, signed_in.view.tenant_slug)
    use_tenant_locale(request, policy.locale)
    return templates_of(request).TemplateResponse(request, "passkeys.html", {
        "me": signed_in.as_me(), "passkeys": mine, "timezone": policy.timezone,
        "added": just_added(request, mine),
        "can_enrol": (signed_in.method or "sso") in passkeys.ENROL_METHODS
        and not signed_in.offline}, headers=PAGE_HEADERS)


async def register_options(request: Request) -> Response:
    await json_body(request)
    options = await run_in_threadpool(passkeys.begin_registration, ctx_of(request),
                                      relying_party(request), request.cookies.get(SESSION_COOKIE))
    return JSONResponse(options, headers=NO_STORE)


async def register(request: Request) -> Response:
    body = await json_body(request)
    stored = await run_in_threadpool(
        lambda: passkeys.finish_registration(
            ctx_of(request), relying_party(request), request.cookies.get(SESSION_COOKIE),
            credential_of(body), name=str(body.get("name") or ""),
            request_id=request_id_of(request)))
    return JSONResponse({"id": stored.id, "name": stored.name, "redirect": "/passkeys"},
                        status_code=201, headers=NO_STORE)


async def revoke(request: Request) -> Response:
    if not same_origin(request):  # a form POST: refuse one another site makes the browser send
        return PlainTextResponse("cross-site request refused", status_code=403,
                                 headers=NO_STORE)
    ctx = ctx_of(request)
    signed_in = await signed_in_of(request)
    if signed_in is None:
        return RedirectResponse("/passkeys/sign-in", status_code=303, headers=NO_STORE)
    raw = str(request.path_params["passkey_id"])
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
        raise InvalidInput("no such passkey")
    passkey_id = int(raw)
    account_id = signed_in.view.account.id
    await run_in_threadpool(lambda: passkeys.revoke_passkey(
        ctx, passkey_id, actor=f"account:{account_id}", owner=account_id,
        request_id=request_id_of(request)))
    return RedirectResponse("/passkeys", status_code=303, headers=NO_STORE)


async def sign_in_page(request: Request) -> Response:
    if (moved := wrong_origin(request)) is not None:
        return moved
    return templates_of(request).TemplateResponse(request, "passkey_sign_in.html", {
        "return_to": request.query_params.get("return_to", "/")}, headers=PAGE_HEADERS)


async def sign_in_options(request: Request) -> Response:
    await json_body(request)
    options = await run_in_threadpool(passkeys.begin_authentication, ctx_of(request),
                                      relying_party(request))
    return JSONResponse(options, headers=NO_STORE)


async def sign_in(request: Request) -> Response:
    body = await json_body(request)
    result = await run_in_threadpool(lambda: passkeys.finish_authentication(
        ctx_of(request), relying_party(request), credential_of(body),
        return_to=str(body.get("return_to") or "/"),
        previous_session=request.cookies.get(SESSION_COOKIE),
        user_agent=request.headers.get("user-agent"), request_id=request_id_of(request)))
    return login_response(request, result)


def login_response(request: Request, result: passkeys.PasskeyLogin) -> Response:
    response = JSONResponse({"redirect": result.redirect, "offline": result.offline,
                             "step_up": result.token is None}, headers=NO_STORE)
    if result.token is not None:
        set_session_cookie(request, response, result.token)
    return response


ROUTES = [
    ("/passkeys", page, ["GET"]),
    ("/passkeys/register/options", register_options, ["POST"]),
    ("/passkeys/register", register, ["POST"]),
    ("/passkeys/{passkey_id}/revoke", revoke, ["POST"]),
    ("/passkeys/sign-in", sign_in_page, ["GET"]),
    ("/passkeys/sign-in/options", sign_in_options, ["POST"]),
    ("/passkeys/sign-in", sign_in, ["POST"]),
]
