"""A stand-in for jitprov for the client's own tests: ES256 keys, their JWKS served through an
``httpx.MockTransport`` (the verifier's only network call), and tokens with the claims of
jitprov's identity tokens (``iss``, ``aud``, ``sub``, ``tenant``, ``email``, ``name``,
``roles``, ``groups``, ``iat``, ``exp``, ``jti``). The server's own suite checks the client
against tokens of a real jitprov (tests/web/test_identity_tokens.py, test_client_django.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from jitprov_client import IdentityVerifier

ISSUER = "https://sso.hospital.example"
TENANT = "st-marys"
ACCOUNT = "0b6f6a3e-5d1c-4c55-9a4b-2f0f3b1e9d11"


class Issuer:
    """Signs tokens like jitprov and publishes its keys at ``{ISSUER}/.well-known/jwks.json``;
    ``down`` makes the JWKS answer 503; ``fetches`` counts the JWKS requests."""

    def __init__(self) -> None:
        self.keys = [self.new_key("k1")]
        self.down = False
        self.fetches = 0
        self.clients: list[httpx.Client] = []

    @staticmethod
    def new_key(kid: str) -> ECKey:
        return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"},
                                  private=True)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.keys]}

    def serve(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            return httpx.Response(503)
        if str(request.url) != f"{ISSUER}/.well-known/jwks.json":
            return httpx.Response(404)
        return httpx.Response(200, json=self.jwks())

    def token(self, *, key: ECKey | None = None, **claims: Any) -> str:
        """A token for Ana, a nurse; ``claims`` replace (None: remove) the defaults."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER, "aud": "jitprov-apps", "sub": ACCOUNT, "tenant": TENANT,
            "email": "ana@hospital.example", "name": "Ana Lima", "roles": ["nurse", "staff"],
            "groups": ["Nurses"], "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        signer = key or self.keys[0]
        return jwt.encode({"alg": "ES256", "kid": signer.kid, "typ": "JWT"}, payload, signer,
                          algorithms=["ES256"])

    def verifier(self, **options: Any) -> IdentityVerifier:
        http = httpx.Client(transport=httpx.MockTransport(self.serve))
        self.clients.append(http)
        return IdentityVerifier(ISSUER, tenant=TENANT, http=http, **options)
