"""OIDC logout over HTTP (in-process ASGI) against the fake provider of the protocol tests
(httpx.MockTransport, locally signed tokens): the back-channel logout receiver with good and
bad logout tokens, and RP-initiated logout from ``POST /logout``. The same against the real
npm ``oidc-provider`` is in tests/interop/test_oidc_logout.py."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store import tables as t
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork
from jitprov.testing.builders import HOSPITAL, nurse
from jitprov.web.app import create_app
from jitprov.web.routes.common import SESSION_COOKIE
from tests.conftest import TEST_SECRET_KEY, Clock
from tests.protocols.oidc_fakes import (
    ATTACKER_RSA_KEY,
    CLIENT_ID,
    EC_KEY,
    ISSUER,
    NOW,
    FakeProvider,
    sign_id_token,
)

BASE_URL = "http://testserver"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
END_SESSION = f"{ISSUER}/logout"


@pytest.fixture
def provider() -> FakeProvider:
    fake = FakeProvider()
    fake.discovery.update(end_session_endpoint=END_SESSION, backchannel_logout_supported=True,
                          backchannel_logout_session_supported=True)
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.fromtimestamp(NOW, UTC))


@pytest.fixture
def octx(database_url: str, clock: Clock, provider: FakeProvider) -> Iterator[ServiceContext]:
    http = provider.client()
    ctx = ServiceContext(db=Database.connect(database_url, pool_size=4),
                         secretbox=SecretBox(TEST_SECRET_KEY), clock=clock, http=http)
    admin.create_tenant(ctx, "hospital")
    admin.add_oidc_connection(
        ctx, tenant="hospital", slug="okta", config={"issuer": ISSUER, "client_id": CLIENT_ID},
        client_secret="s3cret", mapping=HOSPITAL.format(linking="never"),
        mapping_source="hospital.yaml")
    yield ctx
    http.close()
    ctx.db.dispose()


@pytest.fixture
def app_client(octx: ServiceContext) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=octx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def signed_in(ctx: ServiceContext, subject: str, sid: str | None,
              id_token: str | None = None) -> str:
    """A session opened by a login of ``subject`` whose ID token carried ``sid``."""
    identity = dataclasses.replace(nurse(subject, email=f"{subject}@hospital.example"),
                                   issuer=ISSUER, idp_session_id=sid)
    sealed = ctx.secretbox.seal({"id_token": id_token}) if id_token else None
    result = provision_on_login(ctx, "okta", identity, id_token_sealed=sealed)
    assert result.session_token is not None
    return result.session_token


def verify(client: TestClient, token: str) -> int:
    client.cookies.set(SESSION_COOKIE, token)
    try:
        return client.get("/auth/verify").status_code
    finally:
        client.cookies.clear()


def logout_token(**overrides: Any) -> str:
    """A valid logout token for ``CLIENT_ID`` at NOW naming ``sid-1`` of ``u-1``; ``None``
    removes a claim; ``key`` and ``header`` change the signature."""
    key = overrides.pop("key", None)
    header = overrides.pop("header", {"typ": "logout+jwt"})
    claims: dict[str, object] = {
        "iss": ISSUER, "aud": CLIENT_ID, "iat": int(NOW), "exp": int(NOW) + 120,
        "jti": uuid.uuid4().hex, "sub": "u-1", "sid": "sid-1", "events": {EVENT: {}}}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    if key is None:
        return sign_id_token(claims, header=header)
    return sign_id_token(claims, key, header=header)


def post_token(client: TestClient, token: str, connection: str = "okta") -> httpx.Response:
    return client.post(f"/sso/{connection}/backchannel-logout", data={"logout_token": token})


def events(ctx: ServiceContext, kind: str) -> list[dict[str, object]]:
    return [dict(e.data) for e in audit_export.iter_events(ctx, "hospital") if e.type == kind]


def outbox_types(ctx: ServiceContext) -> list[str]:
    with ctx.db.engine.connect() as conn:
        return [row.type for row in conn.execute(
            sa.select(t.outbox_event.c.type).order_by(t.outbox_event.c.id))]


def test_a_logout_token_revokes_the_sessions_of_its_sid_at_the_next_request(
        app_client: TestClient, octx: ServiceContext) -> None:
    named = signed_in(octx, "u-1", "sid-1")
    other_browser = signed_in(octx, "u-1", "sid-2")
    assert verify(app_client, named) == 200

    r = post_token(app_client, logout_token())

    assert (r.status_code, r.headers["cache-control"]) == (200, "no-store")
    assert (verify(app_client, named), verify(app_client, other_browser)) == (401, 200)
    app_client.cookies.set(SESSION_COOKIE, named)
    assert app_client.get("/me").status_code == 401
    [revoked] = events(octx, "session.revoked")
    assert revoked == {"connection": "okta", "reason": "oidc_backchannel_logout",
                       "sessions": 1}
    assert outbox_types(octx).count("session.revoked") == 1


def test_a_logout_token_with_only_sub_ends_every_session_of_the_subject(
        app_client: TestClient, octx: ServiceContext) -> None:
    first, second = signed_in(octx, "u-1", "sid-1"), signed_in(octx, "u-1", "sid-2")
    someone_else = signed_in(octx, "u-2", "sid-3")

    r = post_token(app_client, logout_token(sid=None))

    assert r.status_code == 200
    assert [verify(app_client, s) for s in (first, second, someone_else)] == [401, 401, 200]
    assert [e["sessions"] for e in events(octx, "session.revoked")] == [2]


def test_sid_and_sub_must_both_match_when_both_are_given(
        app_client: TestClient, octx: ServiceContext) -> None:
    session = signed_in(octx, "u-2", "sid-1")  # the sid of another subject

    r = post_token(app_client, logout_token())  # sid-1 of u-1

    assert r.status_code == 400
    assert verify(app_client, session) == 200


@pytest.mark.parametrize(("overrides", "code"), [
    ({"nonce": "n-1"}, "logout_token_invalid"),
    ({"events": None}, "logout_token_invalid"),
    ({"events": {"http://schemas.openid.net/event/other": {}}}, "logout_token_invalid"),
    ({"aud": "another-client"}, "logout_token_invalid"),
    ({"iss": "https://evil.example"}, "logout_token_invalid"),
    ({"key": ATTACKER_RSA_KEY}, "logout_token_invalid"),  # the provider's kid, not its key
    ({"sid": None, "sub": None}, "logout_token_invalid"),
    ({"jti": None}, "logout_token_invalid"),
    ({"iat": int(NOW) - 3600, "exp": None}, "logout_token_expired"),
    ({"exp": int(NOW) - 600}, "logout_token_expired"),
    ({"iat": int(NOW) + 3600}, "logout_token_invalid"),
    ({"header": {"typ": "at+jwt"}}, "logout_token_invalid"),
    ({"sid": "sid-unknown"}, "unknown_session"),
])
def test_a_bad_logout_token_is_a_400_audited_and_revokes_nothing(
        app_client: TestClient, octx: ServiceContext, overrides: dict[str, Any],
        code: str) -> None:
    session = signed_in(octx, "u-1", "sid-1")

    r = post_token(app_client, logout_token(**overrides))

    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert (body["error"], body["code"]) == ("invalid_request", code)
    assert body["error_description"]
    assert verify(app_client, session) == 200
    assert [e["code"] for e in events(octx, "logout.refused")] == [code]
    assert events(octx, "session.revoked") == []


def test_a_replayed_jti_is_refused(app_client: TestClient, octx: ServiceContext) -> None:
    signed_in(octx, "u-1", "sid-1")
    token = logout_token()
    assert post_token(app_client, token).status_code == 200
    again = signed_in(octx, "u-1", "sid-1")  # the same IdP session signs in again

    r = post_token(app_client, token)

    assert (r.status_code, r.json()["code"]) == (400, "logout_token_replayed")
    assert verify(app_client, again) == 200


def test_a_refused_token_does_not_spend_its_jti(app_client: TestClient,
                                                octx: ServiceContext) -> None:
    session = signed_in(octx, "u-1", "sid-1")
    forged = logout_token(jti="jti-1", key=ATTACKER_RSA_KEY)
    assert post_token(app_client, forged).status_code == 400

    assert post_token(app_client, logout_token(jti="jti-1")).status_code == 200
    assert verify(app_client, session) == 401


def test_a_token_whose_sessions_already_ended_is_accepted(app_client: TestClient,
                                                          octx: ServiceContext) -> None:
    session = signed_in(octx, "u-1", "sid-1")
    assert post_token(app_client, logout_token()).status_code == 200

    assert post_token(app_client, logout_token()).status_code == 200  # a new jti, same sid
    assert verify(app_client, session) == 401
    assert len(events(octx, "session.revoked")) == 1


def test_an_es256_logout_token_verifies_when_the_connection_allows_es256(
        app_client: TestClient, octx: ServiceContext) -> None:
    session = signed_in(octx, "u-1", "sid-1")
    assert post_token(app_client, logout_token(key=EC_KEY)).status_code == 200
    assert verify(app_client, session) == 401


@pytest.mark.parametrize(("path", "kwargs", "code"), [
    ("/sso/okta/backchannel-logout", {"data": {"other": "x"}}, "invalid_request"),
    ("/sso/okta/backchannel-logout", {"json": {"logout_token": "x"}}, "invalid_input"),
    ("/sso/okta/backchannel-logout", {"data": {"logout_token": "not.a.jwt"}},
     "logout_token_invalid"),
    ("/sso/okta/backchannel-logout",
     {"content": b"logout_token=" + b"a" * 80_000,
      "headers": {"content-type": "application/x-www-form-urlencoded"}}, "invalid_input"),
    ("/sso/nowhere/backchannel-logout", {"data": {"logout_token": "x"}}, "not_found"),
])
def test_a_malformed_request_is_a_400_with_an_oauth_error(
        app_client: TestClient, octx: ServiceContext, path: str, kwargs: dict[str, Any],
        code: str) -> None:
    session = signed_in(octx, "u-1", "sid-1")

    r = app_client.post(path, **kwargs)

    assert (r.status_code, r.json()["error"], r.json()["code"]) == (
        400, "invalid_request", code)
    assert verify(app_client, session) == 200


# -- RP-initiated logout ------------------------------------------------------------------


def sign_out(client: TestClient, session: str) -> httpx.Response:
    client.cookies.set(SESSION_COOKIE, session)
    return client.post("/logout", headers={"Origin": BASE_URL})


def test_sign_out_sends_the_browser_to_the_providers_logout_with_the_id_token(
        app_client: TestClient, octx: ServiceContext) -> None:
    id_token = sign_id_token({"iss": ISSUER, "sub": "u-1", "aud": CLIENT_ID, "sid": "sid-1"})
    session = signed_in(octx, "u-1", "sid-1", id_token=id_token)

    r = sign_out(app_client, session)

    assert r.status_code == 303
    location = urlsplit(r.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == END_SESSION
    assert query.pop("state")
    assert query == {"id_token_hint": id_token, "client_id": CLIENT_ID,
                     "post_logout_redirect_uri": f"{BASE_URL}/sso/okta/oidc/signed-out"}
    assert verify(app_client, session) == 401
    page = app_client.get("/sso/okta/oidc/signed-out", params={"state": query.get("state")})
    assert (page.status_code, "You are signed out" in page.text) == (200, True)


def test_the_id_token_is_kept_sealed_on_the_session(octx: ServiceContext) -> None:
    id_token = sign_id_token({"iss": ISSUER, "sub": "u-1", "aud": CLIENT_ID})
    signed_in(octx, "u-1", "sid-1", id_token=id_token)
    with octx.db.engine.connect() as conn:
        row = conn.execute(sa.select(t.session.c.id_token_sealed,
                                     t.session.c.idp_session_id)).one()
    assert row.idp_session_id == "sid-1"
    assert id_token not in row.id_token_sealed
    assert id_token.split(".")[1] not in row.id_token_sealed  # not even the claims part


@pytest.mark.parametrize("change", ["no_end_session_endpoint", "idp_logout_off",
                                    "provider_down"])
def test_sign_out_stays_local_when_the_provider_cannot_end_the_session(
        app_client: TestClient, octx: ServiceContext, provider: FakeProvider,
        change: str) -> None:
    if change == "no_end_session_endpoint":
        provider.discovery.pop("end_session_endpoint")
    elif change == "provider_down":
        provider.unreachable = True
    else:
        with octx.db.engine.begin() as conn:
            config = conn.execute(sa.select(t.connection.c.config)).scalar_one()
            conn.execute(t.connection.update().values(
                config={**config, "idp_logout": False}, version=t.connection.c.version + 1))
        octx.connections.forget("okta")
    octx.oidc = type(octx.oidc)(octx.http)  # forget the cached discovery document
    session = signed_in(octx, "u-1", "sid-1")

    r = sign_out(app_client, session)

    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert verify(app_client, session) == 401


def test_sign_out_from_another_site_is_still_refused(app_client: TestClient,
                                                     octx: ServiceContext) -> None:
    session = signed_in(octx, "u-1", "sid-1")
    app_client.cookies.set(SESSION_COOKIE, session)

    r = app_client.post("/logout", headers={"Origin": "https://evil.example"})

    assert r.status_code == 403
    assert verify(app_client, session) == 200


def test_sign_out_of_a_passkey_session_stays_local(app_client: TestClient,
                                                   octx: ServiceContext) -> None:
    """A passkey (or offline) session of an OIDC connection's account has no session at the
    provider to end: the provider may even be down."""
    signed_in(octx, "u-1", "sid-1")
    token = "passkey-session-cookie-value"
    with octx.db.engine.connect() as conn:
        account_id, connection_id = conn.execute(
            sa.select(t.session.c.account_id, t.session.c.connection_id)).one()
    with UnitOfWork(octx.db) as uow:
        uow.sessions.create(session_id=hash_token(token), account_id=account_id,
                            connection_id=connection_id, subject="u-1", now=octx.clock(),
                            expires_at=octx.clock() + octx.session_ttl, user_agent=None,
                            method="passkey")
        uow.commit()

    r = sign_out(app_client, token)

    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert verify(app_client, token) == 401


@pytest.mark.parametrize("junk", ["a.b.c", "not-a-jwt", "e30.e30.", "x" * 20_000])
def test_junk_posted_as_a_logout_token_never_makes_jitprov_call_the_provider(
        app_client: TestClient, octx: ServiceContext, provider: FakeProvider,
        junk: str) -> None:
    """An anonymous post must not cost a discovery or JWKS fetch (an amplifier, and a way to
    tie up the worker threads while the provider is slow or down)."""
    provider.failing["jwks"] = 503
    before = provider.count("discovery"), provider.count("jwks")
    for _ in range(5):
        assert post_token(app_client, junk).status_code == 400
    assert (provider.count("discovery"), provider.count("jwks")) == before
    assert events(octx, "logout.refused")


def _stored_id_tokens(ctx: ServiceContext) -> list[str | None]:
    with ctx.db.engine.connect() as conn:
        return list(conn.execute(sa.select(t.session.c.id_token_sealed)).scalars())


@pytest.mark.parametrize("how", ["sign_out", "backchannel"])
def test_an_ended_session_keeps_no_id_token(app_client: TestClient, octx: ServiceContext,
                                            how: str) -> None:
    id_token = sign_id_token({"iss": ISSUER, "sub": "u-1", "aud": CLIENT_ID, "sid": "sid-1"})
    session = signed_in(octx, "u-1", "sid-1", id_token=id_token)
    assert _stored_id_tokens(octx) != [None]
    if how == "sign_out":
        assert sign_out(app_client, session).status_code == 303
    else:
        assert post_token(app_client, logout_token(sid="sid-1")).status_code == 200
    assert _stored_id_tokens(octx) == [None]


def test_the_signed_out_page_signs_nobody_out(app_client: TestClient,
                                              octx: ServiceContext) -> None:
    """A GET any site can trigger: it neither clears the cookie nor ends the session."""
    session = signed_in(octx, "u-1", "sid-1")
    app_client.cookies.set(SESSION_COOKIE, session)
    page = app_client.get("/sso/okta/oidc/signed-out",
                          headers={"Sec-Fetch-Site": "cross-site"})
    assert page.status_code == 200 and "set-cookie" not in page.headers
    app_client.cookies.clear()
    assert verify(app_client, session) == 200


def test_an_idp_session_id_too_long_to_store_is_not_cut_to_a_shared_prefix(
        app_client: TestClient, octx: ServiceContext) -> None:
    prefix = "s" * 255
    victim = signed_in(octx, "u-1", prefix + "victim")
    assert post_token(app_client, logout_token(sid=prefix, sub="u-2")).status_code in (200, 400)
    assert verify(app_client, victim) == 200  # not ended by a logout naming its prefix
    assert post_token(app_client, logout_token(sid=None, sub="u-1")).status_code == 200
    assert verify(app_client, victim) == 401  # its subject still ends it
