"""``GET /auth/verify``: forward-auth for reverse proxies (nginx ``auth_request``, Traefik
``forwardAuth``, Caddy ``forward_auth``).

Signed in and allowed: 200 with identity headers. Not signed in: 401, or with
``mode=redirect&login=CONNECTION`` a 302 to that connection's login carrying the original path
(``X-Original-URI`` from nginx, ``X-Forwarded-Uri`` from Traefik and Caddy); with
``mode=redirect`` and no ``login``, a 302 to ``/sso/discover`` (the email form of home-realm
discovery) once a tenant has verified an email domain. ``role=NAME``
(repeatable) requires one of those roles: 403 otherwise. A revoked session or a deactivated
account is refused on the very next request (the session cache forgets what the database says
changed: services/session_cache.py).
The proxy configuration must overwrite client-sent headers of these names (docs/forward-auth/).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jitprov.services.discovery import domains_verified
from jitprov.services.sessions import allowed_return_url, safe_return_to, url_origin
from jitprov.web.routes.common import ctx_of, identity_token_of, settings_of, signed_in_of

NO_STORE = {"Cache-Control": "no-store"}


#: what ``quote`` leaves as it is: printable ASCII but ``"``, ``%`` and ``\``
_HEADER_SAFE = " !#$&'()*+,-./:;<=>?@[]^_`{|}~"
_PLAIN_HEADER = re.compile(r'[ !#$&-\[\]-~]*').fullmatch


def header_value(value: str) -> str:
    """Header-safe: printable ASCII as is, anything else percent-encoded UTF-8 (so a name
    like "José" or a newline in a claim can never split or forge a header). A value that
    needs no encoding (most names and emails; every request asks) is returned without
    ``quote``'s encode and scan."""
    if _PLAIN_HEADER(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


def header_list(items: list[str]) -> str:
    """Comma-separated, each item's own commas percent-encoded: "Ward 3, Nights" stays one."""
    return ",".join(header_value(item).replace(",", "%2C") for item in items)


async def verify(request: Request) -> Response:
    signed_in = await signed_in_of(request)
    if signed_in is None:
        return await _unauthenticated(request)
    me = signed_in.identity()
    roles = [str(r) for r in me["roles"]]  # type: ignore[attr-defined]
    # most proxies ask with no query string: no QueryParams built for it
    required = request.query_params.getlist("role") if request.scope["query_string"] else []
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
        f"{prefix}Token": (await identity_token_of(request, me)).token,
        **NO_STORE,
    }
    return Response(status_code=200, headers=headers)


async def _unauthenticated(request: Request) -> Response:
    """401; in redirect mode a 302 to the named connection's login, or without ``login`` to
    the email form of home-realm discovery (``/sso/discover``) once a domain is verified. A
    401 asked with ``login`` carries that login's address in ``X-Jitprov-Login`` (nginx's
    ``auth_request`` can only pass a 401 on, and sends the browser there itself).

    The login comes back to the page the proxy was asked for: its path (``X-Forwarded-Uri``,
    ``X-Original-URI``), on this host. With ``JITPROV_ALLOWED_RETURN_HOSTS`` set and the page
    on another host (``X-Original-URL``, else ``X-Forwarded-Proto`` + ``X-Forwarded-Host`` +
    ``X-Forwarded-Uri``), the login is on the base URL's host, whose session cookie
    ``JITPROV_COOKIE_DOMAIN`` shares, and comes back to the page's absolute URL when its host
    is listed (else to its path on the base URL's host)."""
    redirect = request.query_params.get("mode") == "redirect"
    login = request.query_params.get("login", "")
    if not redirect and not login:
        return Response("unauthenticated", status_code=401, headers=NO_STORE)
    ctx, settings = ctx_of(request), settings_of(request)
    headers = request.headers
    path = headers.get("x-forwarded-uri") or headers.get("x-original-uri")
    full = headers.get("x-original-url")
    proto, host = headers.get("x-forwarded-proto"), headers.get("x-forwarded-host")
    if not full and path and proto and host:
        full = f"{proto}://{host}{path}"
    if full and not path:
        try:
            parts = urlsplit(full)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        except ValueError:  # e.g. an unclosed "[": no path to come back to
            path = None
    return_to, prefix = safe_return_to(path), ""
    if full and ctx.return_hosts and url_origin(full) != url_origin(settings.base_url):
        prefix = settings.base_url  # another host: the login (and its cookie) is on ours
        return_to = allowed_return_url(full, ctx.return_hosts) or return_to
    query = urlencode({"return_to": return_to})
    if login:
        target = f"{prefix}/sso/{quote(login, safe='')}/login?{query}"
    elif await run_in_threadpool(domains_verified, ctx):
        target = f"{prefix}/sso/discover?{query}"
    else:
        return Response("unauthenticated", status_code=401, headers=NO_STORE)
    if redirect:
        return RedirectResponse(target, status_code=302, headers=NO_STORE)
    return Response("unauthenticated", status_code=401,
                    headers={**NO_STORE, f"{settings.forward_auth_header_prefix}Login": target})


ROUTES = [
    ("/auth/verify", verify, ["GET", "HEAD"]),
]
