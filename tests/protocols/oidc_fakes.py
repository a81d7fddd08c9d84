"""A fake OpenID Provider for unit tests: locally generated keys, locally signed ID tokens,
and an ``httpx.MockTransport`` handler serving discovery, JWKS, token and userinfo.

Nothing here touches the network: every request the relying party sends lands in
:meth:`FakeProvider.handler`, which counts it by path and keeps it for the test to inspect.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from jitprov.protocols.oidc import OidcConfig, Providers, validate_id_token

ISSUER = "https://idp.example"
CLIENT_ID = "jitprov-client"
NONCE = "n-0S6_WzA2Mj"
#: epoch seconds every test validates at (2027-01-15)
NOW = 1_800_000_000.0

# 2048-bit RSA generation costs ~0.1 s: make the keys once per test session.
RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True)
#: the provider's next key, published after a rotation
ROTATED_RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"}, private=True)
#: an attacker's key that claims the provider's kid
ATTACKER_RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
ATTACKER_EC_KEY = ECKey.generate_key("P-256", parameters={"kid": "attacker-ec"}, private=True)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def id_token_claims(**overrides: object) -> dict[str, object]:
    """A valid ID token's claims for ``CLIENT_ID`` at ``NOW``; ``None`` removes a claim."""
    claims: dict[str, object] = {
        "iss": ISSUER, "sub": "248289761001", "aud": CLIENT_ID, "exp": int(NOW) + 300,
        "iat": int(NOW), "nonce": NONCE, "auth_time": int(NOW) - 5, "at_hash": "77QmUPtjPfzWtF2A",
        "email": "jane@example.org", "email_verified": True, "name": "Jane Doe",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign_id_token(claims: Mapping[str, object], key: RSAKey | ECKey = RSA_KEY, *,
                  header: Mapping[str, object] | None = None) -> str:
    """A compact JWS over ``claims``; the header defaults to the key's algorithm and kid."""
    alg = "RS256" if isinstance(key, RSAKey) else "ES256"
    full_header: dict[str, Any] = {"alg": alg, "kid": key.kid, **(header or {})}
    return jwt.encode(full_header, dict(claims), key, algorithms=[str(full_header["alg"])])


def unsigned_token(header: Mapping[str, object], claims: Mapping[str, object],
                   signature: bytes = b"") -> str:
    """A compact JWS built by hand (for ``alg: none`` and forged-HMAC attacks)."""
    head = b64url(json.dumps(dict(header)).encode())
    body = b64url(json.dumps(dict(claims)).encode())
    return f"{head}.{body}.{b64url(signature)}"


class FakeProvider:
    """An OpenID Provider behind ``httpx.MockTransport``.

    ``issuer`` is what the documents and tokens name; ``base`` is where the endpoints live
    (they differ for Entra's templated ``{tenantid}`` issuer, discovered at ``common``).
    Tests change ``discovery``, ``published_keys``, ``token_response``, ``userinfo`` or
    ``failing`` to make the provider misbehave, or set ``unreachable`` to refuse every
    connection.
    """

    def __init__(self, issuer: str = ISSUER, *, base: str | None = None) -> None:
        self.issuer = issuer
        self.base = (base or issuer).rstrip("/")
        self.discovery: dict[str, object] = {
            "issuer": issuer,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "jwks_uri": f"{self.base}/jwks",
            "userinfo_endpoint": f"{self.base}/userinfo",
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "client_secret_post", "private_key_jwt"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        }
        self.published_keys: list[RSAKey | ECKey] = [RSA_KEY, EC_KEY]
        self.token_response: tuple[int, dict[str, object]] = (
            200, {"id_token": sign_id_token(id_token_claims()), "access_token": "at-SlAV32hkKG",
                  "token_type": "Bearer", "expires_in": 3600})
        self.userinfo: dict[str, object] = {"sub": "248289761001", "name": "Jane Doe"}
        self.unreachable = False
        #: an error status an endpoint answers instead (``{"jwks": 500}``: a failing key endpoint)
        self.failing: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.counts: Counter[str] = Counter()

    # -- what a test inspects ------------------------------------------------------------------
    def count(self, endpoint: str) -> int:
        """Requests received for ``endpoint`` (``discovery``, ``jwks``, ``token``, ``userinfo``)."""
        return self.counts[self._path(endpoint)]

    def _path(self, endpoint: str) -> str:
        suffix = {"discovery": "/.well-known/openid-configuration", "jwks": "/jwks",
                  "token": "/token", "userinfo": "/userinfo"}[endpoint]
        return httpx.URL(self.base + suffix).path

    def hosts_contacted(self) -> set[str]:
        return {request.url.host for request in self.requests}

    # -- the transport -------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        """An ``httpx.Client`` whose every request this provider answers (close it)."""
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.counts[request.url.path] += 1
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.host != httpx.URL(self.base).host:
            return httpx.Response(404, json={"error": "not_found"})
        path = request.url.path
        for endpoint, status in self.failing.items():
            if path == self._path(endpoint):
                return httpx.Response(status, json={"error": "server_error"})
        if path == self._path("discovery") and request.method == "GET":
            return httpx.Response(200, json=self.discovery)
        if path == self._path("jwks") and request.method == "GET":
            keys = [key.as_dict(private=False) for key in self.published_keys]
            return httpx.Response(200, json={"keys": keys})
        if path == self._path("token") and request.method == "POST":
            status, body = self.token_response
            return httpx.Response(status, json=body)
        if path == self._path("userinfo") and request.method == "GET":
            return httpx.Response(200, json=self.userinfo)
        return httpx.Response(404, json={"error": "not_found"})


class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def validate(token: str, providers: Providers, config: OidcConfig, *, nonce: str = NONCE,
             now: float = NOW) -> dict[str, object]:
    """Discover the configured provider, then validate ``token`` as the callback would."""
    metadata = providers.metadata(config.issuer, discovery_issuer=config.discovery_issuer(),
                                  ttl=config.discovery_ttl_seconds)
    return validate_id_token(token, providers, metadata, config, nonce=nonce, now=now)
