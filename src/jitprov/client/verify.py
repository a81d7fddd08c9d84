"""Identity token verification, an ASGI middleware and a FastAPI-style dependency."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

AUDIENCE = "jitprov-apps"
HEADER = "x-jitprov-token"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InvalidIdentity(Exception):
    """The token is missing, expired, not from this issuer, or does not verify."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who jitprov says is signed in."""

    sub: str
    tenant: str
    email: str | None
    name: str | None
    roles: frozenset[str]
    groups: frozenset[str]

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))


class IdentityVerifier:
    """Verifies identity tokens of one jitprov ``issuer`` for one ``tenant`` (a token of
    another tenant of the same jitprov is refused) with its JWKS: cached, and re-fetched on an
    unknown key id at most once per ``refresh_interval`` seconds, failed fetches included, one
    fetch at a time."""

    def __init__(self, issuer: str, *, tenant: str, audience: str = AUDIENCE,
                 http: httpx.Client | None = None, leeway: int = 30,
                 refresh_interval: float = 30.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.tenant = tenant
        self.audience = audience
        self.http = http or httpx.Client(timeout=5.0)
        self._leeway = leeway
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = 0.0

    def _fetch(self, *, unless_fresh: bool = False) -> KeySet:
        with self._lock:  # one fetch at a time; a failed one counts against the interval
            if unless_fresh and time.monotonic() - self._fetched < self._interval:
                if self._keys is None:
                    raise InvalidIdentity("jitprov's keys are unavailable; retrying later")
                return self._keys
            self._fetched = time.monotonic()
            try:
                response = self.http.get(f"{self.issuer}/.well-known/jwks.json")
                response.raise_for_status()
                self._keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                raise InvalidIdentity(f"cannot read jitprov's keys: {type(exc).__name__}"
                                      ) from exc
            return self._keys

    def verify(self, token: str | None, *, now: int | None = None) -> Identity:
        """Raises InvalidIdentity."""
        if not token:
            raise InvalidIdentity("no identity token")
        keys = self._keys or self._fetch(unless_fresh=True)
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=["ES256"])
            except InvalidKeyIdError:
                fresh = self._fetch(unless_fresh=True)
                if fresh is keys:
                    raise
                decoded = jwt.decode(token, fresh, algorithms=["ES256"])
            jwt.JWTClaimsRegistry(
                now=now, leeway=self._leeway, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience}, sub={"essential": True},
                exp={"essential": True},
                tenant={"essential": True, "value": self.tenant}).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise InvalidIdentity(f"identity token refused: "
                                  f"{getattr(exc, 'error', type(exc).__name__)}") from exc
        c = decoded.claims
        return Identity(sub=str(c["sub"]), tenant=str(c.get("tenant", "")),
                        email=c.get("email"), name=c.get("name"),
                        roles=frozenset(c.get("roles") or ()),
                        groups=frozenset(c.get("groups") or ()))


class JitprovMiddleware:
    """ASGI middleware: verifies ``X-Jitprov-Token`` and puts the Identity (or None) in
    ``scope["state"]["jitprov_identity"]``; with ``required=True`` answers 401 without one."""

    def __init__(self, app: ASGIApp, verifier: IdentityVerifier, *, required: bool = False,
                 header: str = HEADER) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.header = header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = next((v.decode("latin-1") for k, v in scope.get("headers", [])
                      if k.lower() == self.header), None)
        try:  # verification may fetch keys: keep it off the event loop
            identity: Identity | None = await run_in_threadpool(self.verifier.verify, token)
        except InvalidIdentity:
            identity = None
        if identity is None and self.required:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthenticated"})
            return
        scope.setdefault("state", {})["jitprov_identity"] = identity
        await self.app(scope, receive, send)


class JitprovWsgiMiddleware:
    """WSGI middleware (Flask, Django): verifies ``X-Jitprov-Token`` and puts the Identity (or
    None) in ``environ["jitprov.identity"]``; with ``required=True`` answers 401 without one."""

    def __init__(self, app: Callable[..., Any], verifier: IdentityVerifier, *,
                 required: bool = False, header: str = HEADER) -> None:
        self.app = app
        self.verifier = verifier
        self.required = required
        self.environ_key = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: MutableMapping[str, Any],
                 start_response: Callable[..., Any]) -> Any:
        try:
            identity: Identity | None = self.verifier.verify(environ.get(self.environ_key))
        except InvalidIdentity:
            identity = None
        if identity is None and self.required:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"unauthenticated"]
        environ["jitprov.identity"] = identity
        return self.app(environ, start_response)


def requires_role(*roles: str, verifier: IdentityVerifier,
                  header: str = HEADER) -> Callable[[Request], Identity]:
    """A FastAPI dependency: the request's Identity, if it holds one of ``roles`` (any role
    when none given); raises HTTP 401/403 otherwise."""

    def dependency(request: Request) -> Identity:
        try:
            identity = verifier.verify(request.headers.get(header))
        except InvalidIdentity as exc:
            raise HTTPException(401, "unauthenticated") from exc
        if roles and not identity.has_role(*roles):
            raise HTTPException(403, "a required role is missing")
        return identity

    return dependency
