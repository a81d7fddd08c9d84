"""The OIDC callback path in-process: ID token validation (RS256, 20 groups, JWKS cached) +
claims -> identity + provision_on_login with a session, SQLite and PostgreSQL, 1 caller.

The code exchange is a network round trip to the provider and is not included here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

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


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    jwks = KeySet([key]).as_dict(private=False)
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=jwks)))
    providers = Providers(http)
    metadata = ProviderMetadata(issuer=ISSUER, authorization_endpoint=f"{ISSUER}/a",
                                token_endpoint=f"{ISSUER}/t", jwks_uri=f"{ISSUER}/jwks",
                                userinfo_endpoint=None, token_endpoint_auth_methods=(),
                                code_challenge_methods=("S256",))
    config = OidcConfig.parse({"issuer": ISSUER, "client_id": "bench"})
    now = int(time.time())

    def token(n: int) -> str:
        return jwt.encode({"alg": "RS256", "kid": "k1"}, {
            "iss": ISSUER, "aud": "bench", "sub": f"user-{n}", "nonce": "n", "iat": now,
            "exp": now + 3600, "email": f"user{n}@hospital.example", "email_verified": True,
            "name": f"User {n}", "department": "Ward 3", "groups": GROUPS}, key)

    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        db = Database.connect(url, pool_size=4)
        db.upgrade()
        ctx = ServiceContext(db=db, secretbox=SecretBox("bench"))
        admin.create_tenant(ctx, "bench")
        admin.add_connection(ctx, tenant="bench", slug="bench", kind="oidc",
                             config={"issuer": ISSUER, "client_id": "bench"},
                             secrets_={"client_secret": "x"}, mapping=MAPPING,
                             mapping_source="bench.yaml")
        tokens = [token(n) for n in range(ops)]

        def callback(n: int, ctx: ServiceContext = ctx, tokens: list[str] = tokens) -> None:
            claims = validate_id_token(tokens[n], providers, metadata, config, nonce="n")
            provision_on_login(ctx, "bench", identity_from_claims(claims))

        callback(0)  # warm the JWKS and policy caches
        for scenario in ("first login", "returning login (no change)"):
            rows.append({"scenario": f"OIDC callback, {scenario}", "db": db_name,
                         "clients": 1, **_measure(callback, range(1, ops))})
        validate = _measure(lambda n, tokens=tokens: validate_id_token(
            tokens[n], providers, metadata, config, nonce="n"), range(1, ops))
        rows.append({"scenario": "ID token validation only", "db": "-", "clients": 1,
                     **validate})
        db.dispose()
        cleanup()
    http.close()
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
