"""``GET /auth/verify``: forward-auth for reverse proxies (nginx ``auth_request``, Traefik
``forwardAuth``, Caddy ``forward_auth``).

Signed in and allowed: 200 with identity headers. Not signed in: 401, or with
``mode=redirect&login=CONNECTION`` a 302 to that connection's login carrying the original path
(``X-Original-URI`` from nginx, ``X-Forwarded-Uri`` from Traefik and Caddy); with
``mode=redirect`` and no ``login``, a 302 to ``/sso/discover`` (the email form of home-realm
discovery) once a tenant has verified an email domain. ``role=NAME``
(repeatable) requires one of those roles: 403 otherwise. The session is read from the database
at every request, so a revoked session or a deactivated account is refused on the very next one.
The proxy configuration must overwrite client-sent headers of these names (docs/forward-auth/).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.services.discovery import domains_verified
from jitprov.services.identity_tokens import issue_token
from jitprov.services.sessions import current_session, safe_return_to
from jitprov.web.routes.common import SESSION_COOKIE, ctx_of, settings_of

NO_STORE = {"Cache-Control": "no-store"}


def header_value(value: str) -> str:
    """Header-safe: printable ASCII as is, anything else percent-encoded UTF-8 (so a name
    like "José" or a newline in a claim can never split or forge a header)."""
    return quote(value, safe=" !#$&'()*+,-./:;<=>?@[]^_`{|}~")


def header_list(items: list[str]) -> str:
    """Comma-separated, each item's own commas percent-encoded: "Ward 3, Nights" stays one."""
    return ",".join(header_value(item).replace(",", "%2C") for item in items)


async def verify(request: Request) -> Response:
    signed_in = await run_in_threadpool(current_session, ctx_of(request),
                                        request.cookies.get(SESSION_COOKIE))
    if signed_in is None:
        return await _unauthenticated(request)
    me = signed_in.as_me()
    roles = [str(r) for r in me["roles"]]  # type: ignore[attr-defined]
    required = request.query_params.getlist("role")
    if required and not set(required) & set(roles):
        return Response("forbidden: a required role is missing", status_code=403,
                        headers=NO_STORE)
    groups = [str(g) for g in me["groups"]]  # type: ignore[attr-defined]
    prefix = settings_of(request).forward_auth_header_prefix
    headers = {
        f"{prefix}User": str(me["id"]),
        f"{prefix}Email": header_value(str(me["email"] or "")),
        f"{prefix}Name": header_value(str(me["name"] or "")),
        f"{prefix}Roles": header_list(roles),
        f"{prefix}Groups": header_list(groups),
        f"{prefix}Tenant": str(me["tenant"]),
        # the same identity, signed: apps that verify it need not trust the proxy hop
        f"{prefix}Token": (await run_in_threadpool(
            issue_token, ctx_of(request), me,
            issuer=settings_of(request).base_url)).token,
        **NO_STORE,
    }
    return Response(status_code=200, headers=headers)


async def _unauthenticated(request: Request) -> Response:
    """401; in redirect mode a 302 to the named connection's login, or without ``login`` to
    the email form of home-realm discovery (``/sso/discover``) once a domain is verified."""
    if request.query_params.get("mode") == "redirect":
        login = request.query_params.get("login", "")
        original = (request.headers.get("x-forwarded-uri")
                    or request.headers.get("x-original-uri"))
        query = urlencode({"return_to": safe_return_to(original)})
        if login:
            target = f"/sso/{quote(login, safe='')}/login?{query}"
            return RedirectResponse(target, status_code=302, headers=NO_STORE)
        if await run_in_threadpool(domains_verified, ctx_of(request)):
            return RedirectResponse(f"/sso/discover?{query}", status_code=302,
                                    headers=NO_STORE)
    return Response("unauthenticated", status_code=401, headers=NO_STORE)


ROUTES = [
    ("/auth/verify", verify, ["GET", "HEAD"]),
]
