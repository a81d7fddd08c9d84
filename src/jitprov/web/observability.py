"""The edge of every request: who sent it, its request id, its log line, its metrics, its
rate limit (pure ASGI middlewares, installed by ``create_app``).

:class:`RequestContext` (outermost) believes ``X-Forwarded-For``, ``X-Forwarded-Proto`` and
``X-Request-Id`` only from a trusted proxy (``JITPROV_TRUSTED_PROXIES``): the client address is
the right-most address of the chain that is not a trusted hop; a request id from anyone else is
replaced by a new one. The id is echoed as ``X-Request-ID``, kept in ``request.state``
(error pages, audit events) and bound to every log line written while the request is served.
When the answer is sent, one log line: request id, method, route template, path (never the
query string), status, duration, client address, tenant and connection when known; and the
HTTP metrics by route template (an unmatched path counts as ``unmatched``).

:func:`watch_loop` measures, for the life of the app, how late the event loop runs a timer:
a stall there holds up every request the worker is serving.

:class:`RateLimit` answers 429 with ``Retry-After`` on the limited paths: login starts per
client address, SCIM per bearer token (with a SCIM error body), passkey and break-glass
attempts and console sign-in per client address. ``/auth/verify`` is never limited.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitprov.services import logs, metrics
from jitprov.services.ratelimit import RateLimiter, Refusal, token_key
from jitprov.web.errors import render_error

log = logs.get_logger("jitprov.request")

#: a request id taken from a trusted proxy: what a proxy generates (UUIDs, hex, base64)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class TrustedProxies:
    """The peers whose forwarding headers are believed (addresses, networks, or ``*``).
    An address's answer is remembered (a server meets few peers: its proxies, or a bounded
    number of clients), so a request does not parse its peer's address again."""

    _KNOWN_MAX = 4096

    def __init__(self, entries: Sequence[str]) -> None:
        self.any = "*" in entries
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._known: dict[str, bool] = {}

    def __contains__(self, address: str | None) -> bool:
        if address is None:
            return False
        if self.any:
            return True
        if not self.networks:
            return False
        known = self._known.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                known = False
            else:
                known = any(ip in net for net in self.networks)
            if len(self._known) >= self._KNOWN_MAX:
                self._known.clear()
            self._known[address] = known
        return known

    def client(self, peer: str | None, forwarded_for: str) -> str | None:
        """The client's address: the peer, or (when the peer is trusted) the right-most
        address of ``X-Forwarded-For`` that is not a trusted hop."""
        if peer not in self or not forwarded_for:
            return peer
        chain = [part.strip() for part in forwarded_for.split(",") if part.strip()]
        for address in reversed(chain):
            if not _is_ip(address):
                return peer  # a chain we cannot read: the peer is all we know
            if address not in self:
                return address
        return chain[0] if chain else peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _headers(scope: Scope, wanted: frozenset[bytes] | None = None) -> dict[str, str]:
    """The request's headers by lower-case name (only those named in ``wanted``, when
    given); a repeated header's values joined by commas, as HTTP defines it for list-valued
    headers (several ``X-Forwarded-For``)."""
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        key = key.lower()
        if wanted is not None and key not in wanted:
            continue
        name, text = key.decode("latin-1"), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


#: the request headers :class:`RequestContext` reads
_CONTEXT_HEADERS = frozenset({b"host", b"x-request-id", b"x-forwarded-for",
                              b"x-forwarded-proto"})


def route_templates(routes: Sequence[object]) -> dict[object, str]:
    """The path template of each endpoint (or mounted app) served by exactly one route."""
    seen: dict[object, list[str]] = {}
    for route in routes:
        target = getattr(route, "endpoint", None) or getattr(route, "app", None)
        path = getattr(route, "path", None)
        if target is not None and isinstance(path, str):
            seen.setdefault(target, []).append(path)
    return {target: paths[0] for target, paths in seen.items() if len(set(paths)) == 1}


def route_of(scope: Scope, templates: dict[object, str],
             routes: Sequence[object] = ()) -> str:
    """The route template that served the request (``/sso/{connection}/login``), from the
    route the router recorded or else the endpoint it chose; for a request answered before
    the router (a rate limit's 429, the text guard's 400) the first route that matches it;
    ``unmatched`` when none (at once when the router ran and chose none)."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str) and path:
        return path
    endpoint = scope.get("endpoint")
    try:
        found = templates.get(endpoint)
    except TypeError:  # an unhashable endpoint: not one of ours
        found = None
    if found is not None:
        return found
    if endpoint is None and "router" not in scope:  # the router sets it, and tried them all
        for route in routes:
            matches = getattr(route, "matches", None)
            path = getattr(route, "path", None)
            if matches is not None and isinstance(path, str) and \
                    matches(scope)[0] is not Match.NONE:
                return path
    return "unmatched"


#: paths machines call (probes, scrapers, proxies' subrequests, APIs): their Host header is
#: often an internal name, which says nothing about the URL people use
_MACHINE_PATHS = ("/healthz", "/readyz", "/metrics", "/auth/verify", "/scim/", "/api/")


LOOP_TICK = 0.5  # seconds between the timers of watch_loop


async def watch_loop(tick: float = LOOP_TICK) -> None:
    """Until cancelled: set a timer every ``tick`` seconds and record how late the loop ran it
    (``jitprov_event_loop_lag_seconds``). A sample, not a record of every stall: a stall
    lands in the histogram as often as the share of time it takes, which is what the
    requests waiting behind it feel. Nothing per request; each wake-up of an idle worker
    costs CPU (two a second measured 0.5-1 ms a second per idle worker on a small VM), so
    two a second, not a hundred."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + tick
        await asyncio.sleep(tick)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))


def _authority(base_url: str) -> str:
    """``host[:port]`` of a URL, lower-case, without the scheme's default port."""
    parts = urlsplit(base_url)
    default = {"http": ":80", "https": ":443"}.get(parts.scheme, "")
    netloc = parts.netloc.lower()
    return netloc[:-len(default)] if default and netloc.endswith(default) else netloc


_children: dict[tuple[object, ...], object] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: the HTTP metrics' labels come from a bounded
    set (methods, route templates, statuses), and ``labels`` takes a lock and checks them
    each time. Keyed by the metric itself: ``metrics.use_multiprocess_dir`` makes new ones."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        if len(_children) >= 10_000:
            _children.clear()
        child = _children[key] = metric.labels(*labels)
    return child


class RequestContext:
    """Client address, request id, the request's log line and HTTP metrics. The first page
    request whose ``Host`` is not the base URL's is logged once (a warning): cookies and the
    redirects jitprov builds follow the base URL, so people reaching it by another name would
    see sign-ins fail."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str],
                 routes: Sequence[object] = (), base_url: str = "") -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)
        self.routes = routes  # the app's, complete by the first request
        self._templates: dict[object, str] | None = None
        self._base_url = base_url
        self._base_host = _authority(base_url) if base_url else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope, _CONTEXT_HEADERS)
        peer = scope["client"][0] if scope.get("client") else None
        trusted = peer in self.trusted
        request_id = headers.get("x-request-id", "") if trusted else ""
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = secrets.token_hex(8)
        client = (self.trusted.client(peer, headers.get("x-forwarded-for", "")) if trusted
                  else peer)
        if self._base_host:
            self._check_host(headers.get("host", ""), scope["path"])
        if trusted:
            if client != peer and client is not None:
                scope["client"] = (client, 0)
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scope["scheme"] = proto
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_address"] = client
        fields: dict[str, object] = {}
        token = logs.start_request(fields)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500  # unless an answer starts: an exception passes through here

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id",
                                                          request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            if self._templates is None:
                self._templates = route_templates(self.routes)
            route = route_of(scope, self._templates, self.routes)
            _child(metrics.HTTP_REQUESTS, method, route, str(status)).inc()
            _child(metrics.HTTP_SECONDS, method, route).observe(elapsed)
            params = scope.get("path_params") or {}
            for name in ("tenant", "connection"):
                if name not in fields and isinstance(params.get(name), str):
                    fields[name] = params[name]
            log.info("request", method=method, route=route, path=scope["path"],
                     status=status, duration_ms=round(elapsed * 1000, 1), client=client,
                     **fields)
            structlog.contextvars.unbind_contextvars("request_id")
            logs.end_request(token)


    def _check_host(self, host: str, path: str) -> None:
        host = _authority(f"{'https' if self._base_url.startswith('https') else 'http'}://"
                          f"{host.strip()}") if host else ""
        if host and host != self._base_host and not path.startswith(_MACHINE_PATHS):
            self._base_host = ""  # once per process
            log.warning("host_differs_from_base_url", host=host[:255],
                        base_url=self._base_url,
                        hint="set JITPROV_BASE_URL to the URL people use")


#: (method or None for any, path pattern, limit name); first match wins
_LIMITED: list[tuple[str | None, re.Pattern[str], str]] = [
    ("GET", re.compile(r"/sso/[^/]+/login"), "login"),
    ("POST", re.compile(r"/sso/discover"), "login"),  # a domain probe per try: bounded too
    (None, re.compile(r"/scim/v2(/.*)?"), "scim"),
    ("POST", re.compile(r"/passkeys/sign-in(/options)?"), "passkey"),
    ("POST", re.compile(r"/device/passkey(/options)?"), "passkey"),
    ("POST", re.compile(r"/break-glass"), "break_glass"),
    ("POST", re.compile(r"/admin/bootstrap"), "console"),
    ("POST", re.compile(r"/admin/sign-in/sso"), "console"),
    ("POST", re.compile(r"/sso/[^/]+/backchannel-logout"), "idp_logout"),
    (None, re.compile(r"/sso/[^/]+/saml/slo"), "idp_logout"),
]
_SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
_METACHAR = re.compile(r"[\\.^$*+?{}\[\]|()]")


def _literal_prefix(pattern: str) -> str:
    """What every string ``pattern`` fully matches starts with (``""`` when unsure)."""
    if "|" in pattern:
        return ""
    found = _METACHAR.search(pattern)
    if found is None:
        return pattern
    end = found.start()
    if found.group() in "*+?{":  # a quantifier: the character before it is optional
        end -= 1
    return pattern[:max(end, 0)]


#: the literal start of each limited path: a path starting with none of them is not limited
_LIMITED_PREFIXES = tuple({_literal_prefix(pattern.pattern) for _, pattern, _ in _LIMITED})


def limit_of(method: str, path: str) -> str | None:
    """The name of the rate limit a request counts against, if any."""
    if not path.startswith(_LIMITED_PREFIXES):
        return None
    for wanted, pattern, name in _LIMITED:
        if (wanted is None or wanted == method) and pattern.fullmatch(path):
            return name
    return None


class RateLimit:
    """429 with ``Retry-After`` past a limit (inside :class:`RequestContext`)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, templates: Jinja2Templates) -> None:
        self.app = app
        self.limiter = limiter
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = limit_of(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if name is None or not self.limiter.limited(name):
            await self.app(scope, receive, send)
            return
        key = str(scope.get("state", {}).get("client_address") or "unknown")
        if name == "scim":
            scheme, _, credential = _headers(scope).get("authorization", "").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                key = "token:" + token_key(credential.strip())
        refusal = (await run_in_threadpool(self.limiter.hit, name, key) if self.limiter.shared
                   else self.limiter.hit(name, key))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        logs.annotate(rate_limit=name)
        response = self._refuse(Request(scope, receive), refusal)
        await response(scope, receive, send)

    def _refuse(self, request: Request, refusal: Refusal) -> Response:
        headers = {"Retry-After": str(refusal.retry_after)}
        message = (f"too many requests; try again in {refusal.retry_after} "
                   f"second{'s' if refusal.retry_after != 1 else ''}")
        if refusal.limit == "scim":  # RFC 7644 section 3.12: the SCIM error body
            body = {"schemas": [_SCIM_ERROR], "status": "429", "detail": message}
            return Response(json.dumps(body), status_code=429, headers=headers,
                            media_type="application/scim+json")
        return render_error(request, self.templates, 429, "rate_limited", message, headers)
