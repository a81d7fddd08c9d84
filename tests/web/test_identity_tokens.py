"""Signed identity for apps: /me/token, the JWKS, key rotation, and jitprov.client."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from jitprov.client import Identity, IdentityVerifier, InvalidIdentity, JitprovMiddleware
from jitprov.client import requires_role as client_requires_role
from jitprov.services.context import ServiceContext
from jitprov.services.identity_tokens import rotate_keys
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in


def verifier_for(client: TestClient) -> IdentityVerifier:
    return IdentityVerifier("http://testserver", tenant="hospital", http=client)


def token_of(client: TestClient) -> str:
    r = client.get("/me/token")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    token: str = r.json()["token"]
    return token


def test_me_token_verifies_and_describes_the_account(client: TestClient,
                                                     clock: Clock) -> None:
    sign_in(client)
    identity = verifier_for(client).verify(token_of(client),
                                           now=int(clock.now.timestamp()))
    me = client.get("/me").json()
    assert identity == Identity(sub=me["id"], tenant="hospital", email="ana@hospital.example",
                                name="Ana Lima", roles=frozenset({"nurse", "staff"}),
                                groups=frozenset({"Nurses"}))


def test_me_token_needs_a_session(client: TestClient) -> None:
    assert client.get("/me/token").status_code == 401


def test_expired_tampered_or_foreign_tokens_are_refused(client: TestClient,
                                                        clock: Clock) -> None:
    sign_in(client)
    token = token_of(client)
    verifier = verifier_for(client)
    now = int(clock.now.timestamp())
    with pytest.raises(InvalidIdentity):
        verifier.verify(token, now=now + 600)  # 5 minutes of life, 30 s of leeway
    head, body, sig = token.split(".")
    with pytest.raises(InvalidIdentity):
        verifier.verify(f"{head}.{body}.{sig[::-1]}", now=now)
    with pytest.raises(InvalidIdentity):
        IdentityVerifier("http://other-issuer", tenant="hospital", http=client).verify(
            token, now=now)


def test_rotation_keeps_old_tokens_valid_during_the_overlap_only(
        client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    sign_in(client)
    old = token_of(client)
    rotate_keys(ctx, overlap=timedelta(hours=1))
    new = token_of(client)
    assert old.split(".")[0] != new.split(".")[0]  # another kid in the header
    now = int(clock.now.timestamp())
    verifier = verifier_for(client)
    assert verifier.verify(old, now=now).sub == verifier.verify(new, now=now).sub
    # the previous key, the active one and the staged next one
    assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 3
    clock.advance(hours=2)
    assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 2
    with pytest.raises(InvalidIdentity):  # a fresh app no longer finds the old key
        verifier_for(client).verify(old, now=now)


def test_forward_auth_passes_a_token_the_app_can_verify(client: TestClient,
                                                        clock: Clock) -> None:
    sign_in(client)
    token = client.get("/auth/verify").headers["x-jitprov-token"]
    identity = verifier_for(client).verify(token, now=int(clock.now.timestamp()))
    assert identity.roles == frozenset({"nurse", "staff"})


def test_middleware_and_dependency_protect_an_app(ctx: ServiceContext, clock: Clock) -> None:
    from jitprov.testing.builders import setup_connection

    clock.now = datetime.now(UTC)  # the app verifies against the real clock
    setup_connection(ctx)
    with make_client(ctx) as idp:
        sign_in(idp)
        token = idp.get("/me/token").json()["token"]
        verifier = IdentityVerifier("http://testserver", tenant="hospital", http=idp)

        async def whoami(request: Request) -> JSONResponse:
            who = request.state.jitprov_identity
            return JSONResponse({"email": who.email if who else None})

        plain = JitprovMiddleware(Starlette(routes=[Route("/", whoami)]), verifier,
                                  required=True)
        with TestClient(plain) as app:
            assert app.get("/").status_code == 401
            assert app.get("/", headers={"X-Jitprov-Roles": "admin"}).status_code == 401
            assert app.get("/", headers={"X-Jitprov-Token": token}).json() == {
                "email": "ana@hospital.example"}

        api = FastAPI()

        @api.get("/pharmacy")
        def pharmacy(who: Identity = Depends(client_requires_role(
                "pharmacist", verifier=verifier))) -> dict[str, str]:
            return {"sub": who.sub}

        @api.get("/ward")
        def ward(who: Identity = Depends(client_requires_role(
                "nurse", verifier=verifier))) -> dict[str, str]:
            return {"sub": who.sub}

        with TestClient(api) as app:
            assert app.get("/ward").status_code == 401
            assert app.get("/pharmacy", headers={"X-Jitprov-Token": token}).status_code == 403
            assert app.get("/ward", headers={"X-Jitprov-Token": token}).status_code == 200


def test_a_token_of_another_tenant_is_refused(client: TestClient, clock: Clock) -> None:
    sign_in(client)
    token = token_of(client)
    with pytest.raises(InvalidIdentity):
        IdentityVerifier("http://testserver", tenant="clinic", http=client).verify(
            token, now=int(clock.now.timestamp()))


def test_failing_key_fetches_are_rate_limited_too() -> None:
    import httpx

    calls = {"n": 0}

    def down(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(503)

    with httpx.Client(transport=httpx.MockTransport(down)) as http:
        verifier = IdentityVerifier("https://sso.example", tenant="t", http=http)
        for _ in range(50):
            with pytest.raises(InvalidIdentity):
                verifier.verify("x.y.z")
    assert calls["n"] == 1


def test_a_key_is_published_before_it_signs(client: TestClient, ctx: ServiceContext) -> None:
    sign_in(client)
    token_of(client)  # the first token makes the first key, and stages the next
    published_before = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
    for _ in range(3):
        kid = rotate_keys(ctx)
        assert kid in published_before  # an app that cached the JWKS already holds it
        header = json.loads(base64.urlsafe_b64decode(token_of(client).split(".")[0] + "=="))
        assert header["kid"] == kid
        published_before = {k["kid"]
                            for k in client.get("/.well-known/jwks.json").json()["keys"]}


def test_forward_auth_hands_out_the_same_token_for_a_minute_then_a_new_one(
        client: TestClient, ctx: ServiceContext, clock: Clock) -> None:
    """Signing is most of forward-auth's CPU: the same identity gets the same token for
    REUSE_FOR seconds; a role change or a new signing key gets a new one at once."""
    from jitprov.services import accounts
    from jitprov.services.identity_tokens import REUSE_FOR

    sign_in(client)

    def token() -> str:
        answer = client.get("/auth/verify")
        assert answer.status_code == 200
        return answer.headers["x-jitprov-token"]

    def claims(jwt: str) -> dict[str, object]:
        payload = jwt.split(".")[1]
        decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
        return decoded

    first = token()
    clock.advance(seconds=REUSE_FOR - 1)
    assert token() == first
    assert claims(first)["exp"] == claims(first)["iat"] + 300  # type: ignore[operator]
    clock.advance(seconds=2)
    second = token()
    assert second != first  # signed again after a minute
    me = client.get("/me").json()
    accounts.grant_role(ctx, "hospital", me["id"], "pharmacy:read", reason="cover",
                        actor="test")
    third = token()
    assert third != second and "pharmacy:read" in claims(third)["roles"]  # type: ignore[operator]
    rotate_keys(ctx, overlap=timedelta(hours=1))
    ctx.caches.pop("identity_tokens.active_key", None)  # as every node does within 2 s
    assert token() != third


def test_forward_auth_hands_out_a_new_token_at_once_when_the_name_changes(
        client: TestClient) -> None:
    """The reuse key holds the whole identity, non-ASCII text as it is: a new name (as the
    IdP sends it at the next login) gets a new token saying it; the same name again, the
    token just signed."""
    def token() -> str:
        answer = client.get("/auth/verify")
        assert answer.status_code == 200
        return answer.headers["x-jitprov-token"]

    def name_in(jwt: str) -> object:
        payload = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=="))["name"]

    sign_in(client, name="Zoë Ångström")
    first = token()
    assert name_in(first) == "Zoë Ångström" and token() == first
    sign_in(client, name="Zoë Ångström-Lima")
    second = token()
    assert second != first and name_in(second) == "Zoë Ångström-Lima"
    assert token() == second


def test_the_reuse_key_tells_a_non_finite_number_from_none() -> None:
    """orjson writes NaN and the infinities as null: those identities take json.dumps."""
    from jitprov.services.identity_tokens import _reuse_key

    keys = {_reuse_key("k", {"sub": "a", "name": v})
            for v in (None, float("nan"), float("inf"), float("-inf"), "x")}
    assert len(keys) == 5
