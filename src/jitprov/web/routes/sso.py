"""SP-initiated login: ``GET /sso/{connection}/login`` and the per-protocol callbacks."""

from __future__ import annotations

from functools import partial

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.services.login.demo import complete_demo_login
from jitprov.services.login.kinds import StartedLogin, start_login, starts_offline
from jitprov.services.login.oidc import (
    check_oidc_callback,
    check_oidc_callback_async,
    connection_config,
    finish_oidc_login,
)
from jitprov.services.login.saml import (
    check_saml_response,
    classify_relay_state,
    finish_saml_login,
    record_refused_post,
    sp_metadata,
)
from jitprov.services.login.saml import connection_config as saml_config
from jitprov.services.login.state import LOGINS_IN_FLIGHT, older_logins
from jitprov.services.records import ConnectionRecord
from jitprov.web.forms import form_fields
from jitprov.web.routes.common import (
    LOGIN_COOKIE_PREFIX,
    SESSION_COOKIE,
    clear_login_cookie,
    clear_login_cookie_named,
    ctx_of,
    login_cookie_name,
    run_service,
    run_service_steps,
    set_login_cookie,
    set_session_cookie,
    settings_of,
    templates_of,
)


async def login(request: Request) -> Response:
    """Start a login through the connection: the kind's adapter says where the browser goes;
    the browser keeps the login request, sealed, in its binding cookie. ``login_hint`` (from
    ``/sso/discover``) goes on to an OIDC provider. Nothing is written: on a connection
    already cached whose start needs no network (SAML, demo, and OIDC with the provider's
    discovery document in memory), no thread hand-off either (an AuthnRequest's signature is
    ~1 ms of CPU the event loop can pay); should that fail, the start runs again in a thread,
    where its failure is audited. A browser keeps at most :data:`LOGINS_IN_FLIGHT` binding
    cookies: starting another drops the oldest."""
    settings = settings_of(request)
    ctx = ctx_of(request)
    slug = request.path_params["connection"]

    def start(conn: ConnectionRecord | None = None, *, audit: bool = True,
              offline: bool = False) -> StartedLogin:
        return start_login(ctx, slug, request.query_params.get("return_to"),
                           base_url=settings.base_url, dev_mode=settings.dev_mode,
                           login_hint=request.query_params.get("login_hint"),
                           previous_session=request.cookies.get(SESSION_COOKIE),
                           request_id=getattr(request.state, "request_id", None),
                           connection=conn, audit=audit, offline=offline)

    conn = ctx.connections.peek(slug)
    started: StartedLogin | None = None
    if conn is not None and starts_offline(ctx, conn):
        try:
            started = start(conn, audit=False, offline=True)
        except JitprovError:
            started = None  # again in a thread, which audits the failure
    if started is None:
        started = await run_in_threadpool(start)
    response = RedirectResponse(started.location, status_code=303)
    # SameSite=None only for a top-level navigation: a cross-site <img> or fetch must not
    # plant a login cookie (browsers that send no Sec-Fetch-Mode are taken as navigating)
    navigating = request.headers.get("sec-fetch-mode", "navigate") == "navigate"
    set_login_cookie(request, response, started.state, started.cookie,
                     cross_site_post=started.cross_site_post and navigating)
    for name in older_logins(ctx, {k: v for k, v in request.cookies.items()
                                   if k.startswith(LOGIN_COOKIE_PREFIX)},
                             keep=LOGINS_IN_FLIGHT - 1):
        clear_login_cookie_named(request, response, name)
    return response


async def oidc_callback(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    params = {k: v for k, v in request.query_params.items()
              if k in ("code", "state", "iss", "error", "error_description")}
    state = params.get("state", "")
    browser, base_url = request.cookies.get(login_cookie_name(state)), settings_of(request).base_url
    request_id = getattr(request.state, "request_id", None)
    finish = partial(finish_oidc_login, ctx, user_agent=request.headers.get("user-agent"),
                     previous_session=request.cookies.get(SESSION_COOKIE))
    if ctx.db.runs_inline:
        # SQLite: the IdP's answers awaited on the event loop, then the provisioning there
        # too when the write turn is free: no worker thread
        checked = await check_oidc_callback_async(ctx, slug, params, browser=browser,
                                                  base_url=base_url, request_id=request_id)
        result = await run_service(ctx, finish, checked)
    else:
        # PostgreSQL: the provisioning goes to a worker thread, and the code's redemption
        # with it: one hand-off (awaited on the loop beside the threads, it cost more CPU)
        result = await run_service_steps(
            ctx, partial(check_oidc_callback, ctx, slug, params, browser=browser,
                         base_url=base_url, request_id=request_id), finish)
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
    """The demo IdP's form post (``jitprov dev`` only)."""
    slug = request.path_params["connection"]
    async with request.form() as form:  # closed after: a multipart file part is a temp file
        state = str(form.get("state", ""))
        assertion = str(form.get("assertion", ""))
    settings = settings_of(request)
    result = await run_in_threadpool(
        lambda: complete_demo_login(
            ctx_of(request), slug, assertion, state,
            browser=request.cookies.get(login_cookie_name(state)),
            base_url=settings.base_url, dev_mode=settings.dev_mode,
            request_id=getattr(request.state, "request_id", None),
            user_agent=request.headers.get("user-agent"),
            previous_session=request.cookies.get(SESSION_COOKIE)))
    response = RedirectResponse(result.return_to, status_code=303)
    clear_login_cookie(request, response, state)
    if result.session_token:
        set_session_cookie(request, response, result.session_token)
    return response


# -- SAML -------------------------------------------------------------------------------------

#: the form field that marks the ACS's own re-POST (see ``saml_acs``)
BOUNCE_FIELD = "jitprov_bounce"
#: headers of every ACS answer: a SAMLResponse page is never cached, and its URL (or ours)
#: never leaks to another site in a Referer
ACS_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache",
               "Referrer-Policy": "no-referrer"}
#: the bounce page runs only our own static script and posts only to us
BOUNCE_CSP = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
              "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
#: room for the form encoding around a SAMLResponse of ``max_response_bytes`` (base64 4/3,
#: then percent-encoding of ``+/=``)
_FORM_OVERHEAD = 16 * 1024
#: the fields of an IdP's POST to the ACS (and of the bounce page's) that jitprov reads
_ACS_FIELDS = frozenset({"SAMLResponse", "RelayState", BOUNCE_FIELD})


async def saml_metadata(request: Request) -> Response:
    """The SP metadata to give the IdP (entity id, ACS URL, certificate)."""
    slug = request.path_params["connection"]
    xml = await run_in_threadpool(sp_metadata, ctx_of(request), slug,
                                  base_url=settings_of(request).base_url)
    return Response(xml, media_type="application/samlmetadata+xml",
                    headers={"Cache-Control": "max-age=300",
                             "Content-Disposition": f'inline; filename="{slug}-sp.xml"'})


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    """The urlencoded form, refused (413) past ``limit`` bytes before anything is parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge(limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _NotAForm("the identity provider's answer is not a form post "
                        "(SAML HTTP-POST binding expected)")
    try:
        return form_fields(body.decode("ascii"), _ACS_FIELDS, max_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _NotAForm("the identity provider's answer is not a readable form") from exc


class _NotAForm(InvalidInput):
    code = "not_a_form"


class _TooLarge(InvalidInput):
    code = "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the identity provider's answer is larger than {limit // 1024} KiB")


async def _render_refusal(request: Request, exc: JitprovError) -> Response:
    """The app's own error page for ``exc`` (web/errors.py), with the ACS headers."""
    handler = next(request.app.exception_handlers[cls] for cls in type(exc).__mro__
                   if cls in request.app.exception_handlers)
    response: Response = await handler(request, exc)
    if isinstance(exc, _TooLarge):
        response.status_code = 413
    response.headers.update(ACS_HEADERS)
    return response


async def saml_acs(request: Request) -> Response:
    """The Assertion Consumer Service (HTTP-POST binding).

    The IdP's POST is a cross-site top-level POST. On https the binding cookie is
    ``SameSite=None; Secure`` and comes with it: the login completes at once. On http it is
    ``SameSite=Lax``, which browsers do not send with that POST: when the cookie of the login
    named by RelayState is missing, we validate and spend nothing and answer a page that
    re-POSTs the same fields to this URL from our own origin (a same-site POST, which carries
    the cookie), marked so it happens once. See docs/decisions.md, "SAML ACS and SameSite".
    """
    try:
        return await _saml_acs(request)
    except JitprovError as exc:
        return await _render_refusal(request, exc)


async def _saml_acs(request: Request) -> Response:
    slug = request.path_params["connection"]
    ctx = ctx_of(request)
    settings = settings_of(request)
    # unknown: no tenant to audit; cached (most ACS posts): no thread hand-off
    conn = ctx.connections.peek(slug)
    if conn is None:
        conn = await run_in_threadpool(ctx.connections.get, slug)
    try:
        config = saml_config(conn)
        form = await _read_form(request, config.max_response_bytes * 4 // 3 + _FORM_OVERHEAD)
    except InvalidInput as exc:  # not SAML, too large, not a form: audited like every refusal
        await run_in_threadpool(record_refused_post, ctx, conn.slug, exc,
                                request_id=getattr(request.state, "request_id", None))
        raise
    saml_response = form.get("SAMLResponse", "")
    relay_state = form.get("RelayState")
    kind, state = classify_relay_state(relay_state, settings.base_url)
    browser = request.cookies.get(login_cookie_name(state)) if kind == "sp" and state else None
    if kind == "sp" and browser is None and BOUNCE_FIELD not in form and saml_response:
        fields = {"SAMLResponse": saml_response, "RelayState": relay_state or "",
                  BOUNCE_FIELD: "1"}
        return templates_of(request).TemplateResponse(
            request, "saml_bounce.html", {"action": request.url.path, "fields": fields},
            headers={**ACS_HEADERS, "Content-Security-Policy": BOUNCE_CSP})
    # two steps, so that a provisioning behind another writer waits for its turn alone,
    # without verifying the Response again (see run_service_steps)
    result = await run_service_steps(
        ctx, partial(check_saml_response, ctx, slug, saml_response, relay_state,
                     browser=browser, base_url=settings.base_url,
                     request_id=getattr(request.state, "request_id", None)),
        partial(finish_saml_login, ctx, user_agent=request.headers.get("user-agent"),
                previous_session=request.cookies.get(SESSION_COOKIE)))
    response = RedirectResponse(result.return_to, status_code=303, headers=ACS_HEADERS)
    if kind == "sp" and state:
        clear_login_cookie(request, response, state)
    if result.session_token:
        set_session_cookie(request, response, result.session_token)
    return response


ROUTES = [
    ("/sso/{connection}/login", login, ["GET"]),
    ("/sso/{connection}/mock/callback", mock_callback, ["POST"]),
    ("/sso/{connection}/oidc/callback", oidc_callback, ["GET"]),
    ("/sso/{connection}/oidc/jwks.json", oidc_jwks, ["GET"]),
    ("/sso/{connection}/saml/metadata", saml_metadata, ["GET"]),
    ("/sso/{connection}/saml/acs", saml_acs, ["POST"]),
]
