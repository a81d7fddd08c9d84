"""``/device``: a shared device (kiosk). Enrolment sets the device credential cookie; the
device page shows who is signed in (switch user, lock) or the lock screen, never the previous
user's data, and nothing of it is cached (``no-store``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from jitprov.core.errors import InvalidInput
from jitprov.services import admin, devices, passkeys
from jitprov.services.records import DeviceRecord
from jitprov.web import cookies
from jitprov.web.i18n import use_tenant_locale
from jitprov.web.routes.common import (
    SESSION_COOKIE,
    clear_session_cookie,
    ctx_of,
    same_origin,
    secure_cookies,
    settings_of,
    templates_of,
)
from jitprov.web.routes.passkeys import (
    NO_STORE,
    PAGE_HEADERS,
    credential_of,
    json_body,
    just_added,
    login_response,
    relying_party,
    request_id_of,
    wrong_origin,
)

DEVICE_COOKIE = "jitprov_device"


async def _device(request: Request) -> DeviceRecord | None:
    return await run_in_threadpool(devices.device_of, ctx_of(request),
                                   request.cookies.get(DEVICE_COOKIE))


async def _speak_tenants_language(request: Request,
                                  device: DeviceRecord) -> devices.FrontlinePolicy:
    """The device's tenant's frontline policy, its language made the page's (a device with
    no tenant language follows its browser's)."""
    policy = await run_in_threadpool(devices.get_policy, ctx_of(request), device.tenant_slug)
    use_tenant_locale(request, policy.locale)
    return policy


def _not_a_device(request: Request) -> Response:
    return templates_of(request).TemplateResponse(
        request, "device_unknown.html", {}, status_code=403, headers=PAGE_HEADERS)


async def enrol_page(request: Request) -> Response:
    if (moved := wrong_origin(request)) is not None:
        return moved
    code = request.query_params.get("code", "")
    device = await run_in_threadpool(devices.enrolment_of, ctx_of(request), code) \
        if code else None
    if device is None:
        raise InvalidInput("this enrolment link is not valid: it is unknown, already used or "
                           "expired; ask an administrator for a new one")
    await _speak_tenants_language(request, device)
    return templates_of(request).TemplateResponse(request, "device_enrol.html", {
        "device": device, "code": code}, headers=PAGE_HEADERS)


async def enrol(request: Request) -> Response:
    if not same_origin(request):  # another site must not turn this browser into its kiosk
        return PlainTextResponse("cross-site request refused", status_code=403,
                                 headers=NO_STORE)
    async with request.form() as form:  # closed after: a multipart file part is a temp file
        code = str(form.get("code", ""))
    _device_record, credential = await run_in_threadpool(
        lambda: devices.enrol_device(ctx_of(request), code,
                                     request_id=request_id_of(request)))
    response = RedirectResponse("/device", status_code=303, headers=NO_STORE)
    cookies.set_cookie(response, DEVICE_COOKIE, credential,
                       max_age=int(devices.CREDENTIAL_MAX_AGE.total_seconds()), samesite="lax",
                       secure=secure_cookies(request), path="/device")
    clear_session_cookie(request, response)  # whoever enrolled it is not its first user
    return response


async def page(request: Request) -> Response:
    if (moved := wrong_origin(request)) is not None:
        return moved
    device = await _device(request)
    if device is None:
        return _not_a_device(request)
    policy = await _speak_tenants_language(request, device)
    view = await run_in_threadpool(lambda: devices.device_view(
        ctx_of(request), device, request.cookies.get(SESSION_COOKIE),
        request_id=request_id_of(request)))
    if view.step_up is not None:
        return RedirectResponse(view.step_up, status_code=303, headers=NO_STORE)
    if view.signed_in is None:
        connections = [c.slug for c in await run_in_threadpool(
            admin.list_connections, ctx_of(request), device.tenant_slug)
            if c.enabled and (settings_of(request).dev_mode or c.kind != "mock")]
        response = templates_of(request).TemplateResponse(request, "device_locked.html", {
            "device": device, "reason": view.locked, "connections": connections},
            headers=PAGE_HEADERS)
        clear_session_cookie(request, response)
        return response
    me = view.signed_in.as_me()
    mine = await run_in_threadpool(passkeys.list_passkeys, ctx_of(request), str(me["id"]))
    now = ctx_of(request).clock()
    shift_end = devices.next_shift_boundary(now, policy.shifts, policy.timezone)
    return templates_of(request).TemplateResponse(request, "device.html", {
        "device": device, "me": me, "offline": view.signed_in.offline,
        "initials": initials(str(me.get("name") or me.get("email") or "")),
        "idle_seconds": policy.idle_seconds, "idle_clock": clock(policy.idle_seconds),
        "shift_end": shift_end, "timezone": policy.timezone,
        "shift_clock": clock(int((shift_end - now).total_seconds())) if shift_end else "",
        "has_passkey": bool(mine), "added": just_added(request, mine),
        "can_enrol": (view.signed_in.method or "sso") in passkeys.ENROL_METHODS},
        headers=PAGE_HEADERS)


def initials(name: str) -> str:
    """The photo-less avatar's letters: the first letters of the first and last words of a
    name ("Ana Lima" -> "AL"), or of an email's local part."""
    words = name.split("@", 1)[0].replace(".", " ").replace("_", " ").split()
    if not words:
        return "?"
    letters = words[0][0] + (words[-1][0] if len(words) > 1 else "")
    return letters.upper()


def clock(seconds: int) -> str:
    """A countdown as the kiosk shows it (``device.js`` keeps it running): ``4:59``,
    ``2:05:00``."""
    seconds = max(0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def passkey_options(request: Request) -> Response:
    await json_body(request)
    device = await _device(request)
    if device is None:
        raise InvalidInput("this is not a registered device")
    options = await run_in_threadpool(passkeys.begin_authentication, ctx_of(request),
                                      relying_party(request), device)
    return JSONResponse(options, headers=NO_STORE)


async def passkey_sign_in(request: Request) -> Response:
    body = await json_body(request)
    device = await _device(request)
    if device is None:
        raise InvalidInput("this is not a registered device")
    result = await run_in_threadpool(lambda: passkeys.finish_authentication(
        ctx_of(request), relying_party(request), credential_of(body), device=device,
        previous_session=request.cookies.get(SESSION_COOKIE),
        user_agent=request.headers.get("user-agent"), request_id=request_id_of(request)))
    return login_response(request, result)


async def lock(request: Request) -> Response:
    if not same_origin(request):  # a sibling subdomain must not sign the kiosk's user out
        return PlainTextResponse("cross-site request refused", status_code=403,
                                 headers=NO_STORE)
    device = await _device(request)
    if device is not None:
        await run_in_threadpool(lambda: devices.lock(
            ctx_of(request), device, request.cookies.get(SESSION_COOKIE),
            request_id=request_id_of(request)))
    response = RedirectResponse("/device", status_code=303, headers=NO_STORE)
    clear_session_cookie(request, response)
    return response


ROUTES = [
    ("/device/enrol", enrol_page, ["GET"]),
    ("/device/enrol", enrol, ["POST"]),
    ("/device", page, ["GET"]),
    ("/device/passkey/options", passkey_options, ["POST"]),
    ("/device/passkey", passkey_sign_in, ["POST"]),
    ("/device/lock", lock, ["POST"]),
]
