"""The identity token: an ES256 JWT of one jitprov issuer and tenant, checked against the
issuer's JWKS (``{issuer}/.well-known/jwks.json``)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

#: the ``aud`` of every identity token jitprov signs
AUDIENCE = "jitprov-apps"
#: the header jitprov's forward-auth passes upstream (``JITPROV_FORWARD_AUTH_HEADER_PREFIX``
#: + ``Token``, with the default prefix)
HEADER = "X-Jitprov-Token"


class InvalidIdentity(Exception):
    """The token is missing, expired, not from this issuer or tenant, or does not verify."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who jitprov says is signed in: ``sub`` is the jitprov account id."""

    sub: str
    tenant: str
    email: str | None
    name: str | None
    roles: frozenset[str]
    groups: frozenset[str]

    def has_role(self, *roles: str) -> bool:
        """True when the identity holds at least one of ``roles``."""
        return bool(self.roles & set(roles))


def single_token(values: Iterable[str]) -> str | None:
    """The token of a request's header values: None unless the header came exactly once
    with one value. A repeated header, or values merged with a comma (what a proxy that
    appends its header instead of replacing the client's leaves), is no token: the client's
    own value could otherwise win."""
    given = list(values)
    if len(given) != 1 or "," in given[0]:
        return None
    return given[0]


class IdentityVerifier:
    """Verifies identity tokens of one jitprov ``issuer`` for one ``tenant`` (a token of
    another tenant of the same jitprov is refused) with its JWKS, one fetch at a time:

    - the key set is replaced by a fresh fetch ``max_age`` seconds after the last one, so a
      key jitprov stopped publishing (retired, or removed after a leak) is refused from then
      on;
    - an unknown key id fetches again, at most once per ``refresh_interval`` seconds, failed
      fetches included;
    - while fetches fail, the last key set read is used for at most ``stale_limit`` seconds
      after it was read; then every token is refused until a fetch succeeds.

    Thread-safe: one verifier serves a whole process."""

    def __init__(self, issuer: str, *, tenant: str, audience: str = AUDIENCE,
                 http: httpx.Client | None = None, leeway: int = 30,
                 refresh_interval: float = 30.0, max_age: float = 600.0,
                 stale_limit: float = 3600.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.tenant = tenant
        self.audience = audience
        self.http = http or httpx.Client(timeout=5.0)
        self._leeway = leeway
        self._interval = refresh_interval
        self._max_age = max_age
        self._stale_limit = max(stale_limit, max_age)
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched = -math.inf  # the last fetch, failed or not (time.monotonic)
        self._loaded = -math.inf  # the last successful one

    def _current(self) -> KeySet:
        """The cached key set while younger than ``max_age``, else a fresh one."""
        keys = self._keys
        if keys is not None and time.monotonic() - self._loaded < self._max_age:
            return keys
        return self._fetch(unless_fresh=True)

    def _fetch(self, *, unless_fresh: bool = False) -> KeySet:
        with self._lock:  # one fetch at a time; a failed one counts against the interval
            now = time.monotonic()
            if unless_fresh and now - self._fetched < self._interval:
                return self._usable(now)
            self._fetched = now
            try:
                response = self.http.get(f"{self.issuer}/.well-known/jwks.json")
                response.raise_for_status()
                keys = KeySet.import_key_set(response.json())
            except (httpx.HTTPError, ValueError, JoseError) as exc:
                if self._keys is not None and now - self._loaded < self._stale_limit:
                    return self._keys  # jitprov unreachable for a while: the last set read
                self._keys = None
                raise InvalidIdentity(f"cannot read jitprov's keys: {type(exc).__name__}"
                                      ) from exc
            self._keys, self._loaded = keys, now  # replaced whole: removed keys go
            return keys

    def _usable(self, now: float) -> KeySet:
        if self._keys is None or now - self._loaded >= self._stale_limit:
            raise InvalidIdentity("jitprov's keys are unavailable; retrying later")
        return self._keys

    def verify(self, token: str | None, *, now: int | None = None) -> Identity:
        """The identity the token states, once its signature, ``iss``, ``aud``, ``tenant``,
        ``sub`` and ``exp`` (with the leeway) check out; ``now`` is a Unix time for tests.
        Raises InvalidIdentity."""
        if not token:
            raise InvalidIdentity("no identity token")
        keys = self._current()
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
