"""What every route module needs: the service context, templates and the session cookie."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from jitprov.core.errors import DatabaseTimeout
from jitprov.services.context import ServiceContext
from jitprov.services.identity_tokens import IssuedToken, issue_token, reissued_token
from jitprov.services.records import Database, Declined, Ran
from jitprov.services.sessions import SignedIn, current_session, remembered_session
from jitprov.settings import Settings
from jitprov.web import cookies

SESSION_COOKIE = "jitprov_session"

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A")


def ctx_of(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def templates_of(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


#: the pauses of a call waiting on the event loop for SQLite's write turn, in seconds; the
#: last one repeats. A try that finds the turn taken costs no work of the call
#: (``Database.run_inline`` asks first).
TURN_PAUSES = (0.0005, 0.001, 0.002, 0.002, 0.005)
#: how long a call waits on the loop while a thread of this process holds the turn, before it
#: waits in a worker thread instead: the write lock lets waiting threads in as it is released,
#: which the loop, that can only look, would miss behind writers that follow one another
#: (SCIM Group writes, the entitlement job between its batches)
THREAD_PATIENCE = 0.01


@dataclass
class _Line:
    """The calls of one event loop waiting for one database's write turn, in order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


_LINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, _Line]] = \
    weakref.WeakKeyDictionary()


async def run_service(ctx: ServiceContext, fn: Callable[P, R], /, *args: P.args,
                      **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` on the event loop where the database can run it there
    (SQLite: ``Database.run_inline``), else (PostgreSQL) in a worker thread. For services that
    write a few rows and make no network call: a SCIM User write, the SAML ACS. The hand-off
    to a thread and back costs 0.2 ms of CPU, as much as a SCIM create's own transaction.

    When another process holds the write turn (another ``serve`` worker, a CLI command), the
    call waits for it here, on the event loop, trying again after each of
    :data:`TURN_PAUSES` until the busy timeout (then DatabaseTimeout, as in a thread), and the
    loop serves other requests meanwhile. The calls of a loop that find others waiting line
    up behind them: a call just arrived does not take the turn from one that waited. Handing
    these calls to threads made the next ones find the turn held by those threads: under load
    most calls went to threads (51-78 % of a worker's logins at 16 concurrent browsers), each
    hand-off costing CPU and the threads waiting for the GIL behind a busy loop. A turn held
    by a thread of this process is waited for on the loop for :data:`THREAD_PATIENCE`, then in
    a thread; a pool with no idle connection sends the call to a thread at once (an overflow
    connection serves it there)."""
    db = ctx.db
    if not db.runs_inline:
        return await run_in_threadpool(fn, *args, **kwargs)
    line = _line(id(db))
    tried = not line.waiting  # else in line behind the others, without a try of its own
    outcome: Ran[R] | Declined = Declined.PROCESS
    if tried:
        outcome = db.run_inline(fn, *args, **kwargs)
        if isinstance(outcome, Ran):
            return outcome.value
    if outcome is Declined.PROCESS or outcome is Declined.THREAD:
        outcome = await _in_line(db, line, fn, args, kwargs, tried=tried)
        if isinstance(outcome, Ran):
            return outcome.value
    return await run_in_threadpool(fn, *args, **kwargs)


async def _in_line(db: Database, line: _Line, fn: Callable[..., R], args: tuple[Any, ...],
                   kwargs: dict[str, Any], *, tried: bool) -> Ran[R] | Declined:
    """Wait in ``line``, then for the turn: :class:`Ran`, or why the call goes to a thread
    (a thread of this process kept the turn past :data:`THREAD_PATIENCE`, no idle pooled
    connection). DatabaseTimeout past the busy timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + db.limits.busy_timeout
    line.waiting += 1
    try:
        try:
            await asyncio.wait_for(line.lock.acquire(), deadline - loop.time())
        except TimeoutError:
            raise _no_turn(db.limits.busy_timeout) from None
        try:
            pauses = itertools.chain(TURN_PAUSES, itertools.repeat(TURN_PAUSES[-1]))
            behind_thread: float | None = None
            while True:
                if tried:  # the first try of a call that waited in line comes at once
                    pause = next(pauses)
                    if loop.time() + pause > deadline:
                        raise _no_turn(db.limits.busy_timeout)
                    await asyncio.sleep(pause)
                tried = True
                outcome = db.run_inline(fn, *args, **kwargs)
                if outcome is Declined.THREAD:
                    if behind_thread is None:
                        behind_thread = loop.time()
                    if loop.time() - behind_thread < THREAD_PATIENCE:
                        continue
                if outcome is not Declined.PROCESS:
                    return outcome
        finally:
            line.lock.release()
    finally:
        line.waiting -= 1


def _no_turn(seconds: float) -> DatabaseTimeout:
    return DatabaseTimeout(f"the database is busy: no write turn within {seconds:g} s")


def _line(key: int) -> _Line:
    lines = _LINES.setdefault(asyncio.get_running_loop(), {})
    line = lines.get(key)
    if line is None:
        line = lines[key] = _Line()
    return line


async def run_service_steps(ctx: ServiceContext, first: Callable[[], A],
                            then: Callable[[A], R]) -> R:
    """``then(first())``, for a service in two steps whose first checks what came in (a
    Response's signature) and whose second writes the login. Where the database can run a
    call on the event loop (SQLite), each step goes through :func:`run_service` on its own:
    a second step that must wait for another writer then runs again alone, without the
    first. Elsewhere (PostgreSQL) both run in one worker thread: one hand-off, not two."""
    if not ctx.db.runs_inline:
        def both() -> R:
            return then(first())
        return await run_in_threadpool(both)
    checked = await run_service(ctx, first)
    return await run_service(ctx, then, checked)


async def signed_in_of(request: Request) -> SignedIn | None:
    """The session of the request's cookie (``current_session``): from memory on the event
    loop when the session cache can say it, else read in a worker thread. A thread hand-off
    costs more CPU than the whole answer from memory (forward-auth asks on every request)."""
    ctx, token = ctx_of(request), request.cookies.get(SESSION_COOKIE)
    if not token:
        return None  # as current_session answers, without a thread
    remembered = remembered_session(ctx, token)
    if remembered is not None:
        return remembered
    return await run_in_threadpool(current_session, ctx, token)


async def identity_token_of(request: Request, me: Mapping[str, object]) -> IssuedToken:
    """``issue_token`` for ``me``: a token still handed out again from memory on the event
    loop, else signed (or the key read) in a worker thread."""
    ctx, issuer = ctx_of(request), settings_of(request).base_url
    reissued = reissued_token(ctx, me, issuer=issuer)
    if reissued is not None:
        return reissued
    return await run_in_threadpool(issue_token, ctx, me, issuer=issuer)


LOGIN_COOKIE_PREFIX = "jitprov_login_"


def secure_cookies(request: Request) -> bool:
    """Secure cookies when the public URL is https, or the request came over https (directly
    or through a trusted proxy's X-Forwarded-Proto, which uvicorn applies)."""
    return settings_of(request).cookie_secure or request.url.scheme == "https"


def session_cookie_domain(request: Request) -> str | None:
    """``JITPROV_COOKIE_DOMAIN`` when this request's host is inside it (the session cookie is
    then shared by every host of that domain); None otherwise: host-only, as a browser would
    drop a cookie for a domain its host is outside of (jitprov reached by its address)."""
    domain = settings_of(request).cookie_domain
    host = (request.url.hostname or "").lower()
    if domain and (host == domain or host.endswith("." + domain)):
        return domain
    return None


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """The session cookie; shared with ``JITPROV_COOKIE_DOMAIN`` when set, and then a
    host-only one of the same name (from before the setting) is expired in the same answer."""
    settings = settings_of(request)
    domain = session_cookie_domain(request)
    if domain is not None:
        cookies.delete_cookie(response, SESSION_COOKIE, samesite="lax",
                              secure=secure_cookies(request), path="/")
    cookies.set_cookie(response, SESSION_COOKIE, token,
                       max_age=int(settings.session_ttl.total_seconds()), samesite="lax",
                       secure=secure_cookies(request), path="/", domain=domain)


def clear_session_cookie(request: Request, response: Response) -> None:
    """Expire the session cookie, with the same Domain it was set with (and a host-only one
    of the same name too)."""
    domain = session_cookie_domain(request)
    cookies.delete_cookie(response, SESSION_COOKIE, samesite="lax",
                          secure=secure_cookies(request), path="/")
    if domain is not None:
        cookies.delete_cookie(response, SESSION_COOKIE, samesite="lax",
                              secure=secure_cookies(request), path="/", domain=domain)


def login_cookie_name(state: str) -> str:
    """One binding cookie per login in flight, so two tabs do not undo each other."""
    return LOGIN_COOKIE_PREFIX + hashlib.sha256(state.encode()).hexdigest()[:16]


def set_login_cookie(request: Request, response: Response, state: str, sealed: str, *,
                     cross_site_post: bool = False) -> None:
    """Bind a login to this browser: the cookie holds its login request, sealed. SameSite=Lax
    reaches top-level GET redirects and same-site POSTs (OIDC, the demo IdP). When the IdP
    answers with a cross-site POST (SAML) and the cookie can be Secure (https), it is
    ``SameSite=None``, which that POST carries; on http the ACS re-posts itself to get the
    Lax cookie (see ``sso.saml_acs``). It outlives the request (twice its lifetime) so that a
    late callback is told the sign-in expired, not that another browser started it."""
    seconds = 2 * int(ctx_of(request).login_request_ttl.total_seconds())
    secure = secure_cookies(request)
    cookies.set_cookie(response, login_cookie_name(state), sealed, max_age=seconds,
                       samesite="none" if cross_site_post and secure else "lax",
                       secure=secure, path="/sso/")


def clear_login_cookie(request: Request, response: Response, state: str) -> None:
    clear_login_cookie_named(request, response, login_cookie_name(state))


def clear_login_cookie_named(request: Request, response: Response, name: str) -> None:
    cookies.delete_cookie(response, name, samesite="lax", secure=secure_cookies(request),
                          path="/sso/")


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (``Sec-Fetch-Site``,
    else ``Origin``, else ``Referer``); a sibling subdomain is another origin, though the same
    site. True when it does not say (non-browser clients, old browsers): the CSRF token is
    the check then, where there is one."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    allowed = {_origin(settings_of(request).base_url), _origin(str(request.base_url))}
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.rstrip("/") in allowed
    referer = request.headers.get("referer")
    return referer is None or _origin(referer) in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
