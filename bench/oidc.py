"""The OIDC callback path in-process: ID token validation (RS256, 20 groups, JWKS cached) +
claims -> identity + provision_on_login with a session, SQLite and PostgreSQL, 1 caller.

The code exchange is a network round trip to the provider and is not included here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from bench.provision import MAPPING, databases
from jitprov.protocols.oidc import (
    OidcConfig,
    ProviderMetadata,
    Providers,
    identity_from_claims,
    validate_id_token,
)
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database

ISSUER = "https://idp.bench"
GROUPS = ["Nurses", "Ward 3", "All Staff"] + [f"Group {i}" for i in range(17)]


@dataclass(frozen=True)
class Provider:
    """The bench's OIDC provider as the callback sees it: its signing key, its JWKS served
    from memory (the providers' cache then holds it), its metadata and the client's
    configuration."""

    key: RSAKey
    http: httpx.Client
    providers: Providers
    metadata: ProviderMetadata
    config: OidcConfig

    @classmethod
    def make(cls) -> Provider:
        key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
        jwks = KeySet([key]).as_dict(private=False)
        http = httpx.Client(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json=jwks)))
        metadata = ProviderMetadata(issuer=ISSUER, authorization_endpoint=f"{ISSUER}/a",
                                    token_endpoint=f"{ISSUER}/t", jwks_uri=f"{ISSUER}/jwks",
                                    userinfo_endpoint=None, token_endpoint_auth_methods=(),
                                    code_challenge_methods=("S256",))
        return cls(key, http, Providers(http), metadata,
                   OidcConfig.parse({"issuer": ISSUER, "client_id": "bench"}))

    def tokens(self, subjects: range) -> list[str]:
        """A signed ID token (20 groups) per subject."""
        now = int(time.time())
        return [jwt.encode({"alg": "RS256", "kid": "k1"}, {
            "iss": ISSUER, "aud": "bench", "sub": f"user-{n}", "nonce": "n", "iat": now,
            "exp": now + 3600, "email": f"user{n}@hospital.example", "email_verified": True,
            "name": f"User {n}", "department": "Ward 3", "groups": GROUPS}, self.key)
            for n in subjects]

    def validate(self, token: str) -> dict[str, object]:
        return validate_id_token(token, self.providers, self.metadata, self.config, nonce="n")


def add_connection(ctx: ServiceContext) -> None:
    """Tenant ``bench`` with OIDC connection ``bench`` to the bench's provider."""
    admin.create_tenant(ctx, "bench")
    admin.add_connection(ctx, tenant="bench", slug="bench", kind="oidc",
                         config={"issuer": ISSUER, "client_id": "bench"},
                         secrets_={"client_secret": "x"}, mapping=MAPPING,
                         mapping_source="bench.yaml")


def callback(ctx: ServiceContext, provider: Provider,
             tokens: list[str]) -> Callable[[int], object]:
    """The callback of the n-th token after its code exchange: verified, provisioned."""
    def one(n: int) -> object:
        return provision_on_login(ctx, "bench", identity_from_claims(provider.validate(tokens[n])))
    return one


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    provider = Provider.make()
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        db = Database.connect(url, pool_size=4)
        db.upgrade()
        ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
        add_connection(ctx)
        tokens = provider.tokens(range(ops))
        first = callback(ctx, provider, tokens)
        first(0)  # warm the JWKS and policy caches
        for scenario in ("first login", "returning login (no change)"):
            rows.append({"scenario": f"OIDC callback, {scenario}", "db": db_name,
                         "clients": 1, **_measure(first, range(1, ops))})
        validate = _measure(lambda n, tokens=tokens: provider.validate(tokens[n]),
                            range(1, ops))
        rows.append({"scenario": "ID token validation only", "db": "-", "clients": 1,
                     **validate})
        db.dispose()
        cleanup()
    provider.http.close()
    return rows


def _measure(fn: Callable[[int], object], items: range) -> dict[str, float]:
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for n in items:
        t0 = time.perf_counter()
        fn(n)
        latencies.append(time.perf_counter() - t0)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    count = len(latencies)
    return {"ops": count, "ops_per_s": count / wall, "cpu_ms_per_op": cpu / count * 1000,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[max(0, int(count * 0.99) - 1)] * 1000}
