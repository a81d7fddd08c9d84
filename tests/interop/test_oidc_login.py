"""jitprov's OIDC sign-in against a real, certified OpenID Provider (panva/oidc-provider) on
loopback: the whole flow, our HTTP app in-process, the provider as a real Node.js server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from jitprov.core.errors import InvalidInput
from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.oidc import new_client_key
from jitprov.services.outbound import guarded_client, policy_from
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.testing.builders import HOSPITAL
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.interop.oidc_op import OpenIdProvider, complete_login

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the test client serves the app
SECRET = "op-client-secret-0123456789"
SCOPES = ["openid", "email", "profile", "groups"]
ANA = {"email": "ana@hospital.example", "email_verified": True, "name": "Ana Lima",
       "department": "Ward 3", "groups": ["Nurses"]}
BEN = {"email": "ben@hospital.example", "email_verified": True, "name": "Ben Okafor",
       "department": "Pharmacy", "groups": ["Pharmacists"]}


def client_metadata(client_id: str, method: str, **extra: Any) -> dict[str, Any]:
    return {"client_id": client_id, "redirect_uris": [f"{BASE_URL}/sso/{client_id}/oidc/callback"],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": method, **extra}


@pytest.fixture
def private_key() -> tuple[str, dict[str, str]]:
    return new_client_key("okta-pkjwt")


@pytest.fixture
def op(private_key: tuple[str, dict[str, str]]) -> Iterator[OpenIdProvider]:
    clients = [client_metadata("okta", "client_secret_basic", client_secret=SECRET),
               client_metadata("okta-post", "client_secret_post", client_secret=SECRET),
               client_metadata("okta-pkjwt", "private_key_jwt",
                               jwks={"keys": [private_key[1]]})]
    with OpenIdProvider(clients=clients, accounts={"ana": ANA, "ben": BEN}) as provider:
        yield provider


@pytest.fixture
def ctx(database_url: str, op: OpenIdProvider,
        private_key: tuple[str, dict[str, str]]) -> Iterator[ServiceContext]:
    # the server's own client (the outbound guard, loopback allowlisted): the callback
    # awaits the provider through it on the event loop, as under `serve`
    http = guarded_client(policy_from(["127.0.0.1/32"], allow_private=False))
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    mapping = HOSPITAL.format(linking="never")
    for slug, method in (("okta", "client_secret_basic"), ("okta-post", "client_secret_post")):
        admin.add_oidc_connection(
            context, tenant="hospital", slug=slug,
            config={"issuer": op.issuer, "client_id": slug, "scopes": SCOPES,
                    "token_auth_method": method, "userinfo": slug == "okta-post"},
            client_secret=SECRET, mapping=mapping, mapping_source="hospital.yaml")
    admin.add_connection(  # the key pair the provider was started with
        context, tenant="hospital", slug="okta-pkjwt", kind="oidc",
        config={"issuer": op.issuer, "client_id": "okta-pkjwt", "scopes": SCOPES,
                "token_auth_method": "private_key_jwt", "client_public_jwk": private_key[1]},
        secrets_={"private_jwk": private_key[0]}, mapping=mapping, mapping_source="m.yaml")
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def sign_in(browser: TestClient, user: str, connection: str = "okta") -> httpx.Response:
    start = browser.get(f"/sso/{connection}/login", params={"return_to": "/me"})
    assert start.status_code == 303, start.text
    callback = complete_login(start.headers["location"], user)
    assert callback.startswith(f"{BASE_URL}/sso/{connection}/oidc/callback?")
    return browser.get(callback)


def roles(ctx: ServiceContext) -> dict[str, list[str]]:
    return {v.account.email or "": sorted(v.account.roles)
            for v in admin.list_accounts(ctx, "hospital")}


def test_first_login_creates_the_account_with_mapped_roles(browser: TestClient,
                                                           ctx: ServiceContext) -> None:
    r = sign_in(browser, "ana")
    assert (r.status_code, r.headers["location"]) == (303, "/me")
    me = browser.get("/me").json()
    assert (me["email"], me["name"], me["roles"], me["external_id"]) == (
        "ana@hospital.example", "Ana Lima", ["nurse", "staff"], "ana")
    assert me["attributes"] == {"department": "Ward 3"}


def test_second_login_does_not_duplicate(browser: TestClient, ctx: ServiceContext) -> None:
    sign_in(browser, "ana")
    browser.cookies.clear()
    sign_in(browser, "ana")
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types[-2:] == ["account.created", "login.succeeded"]


def test_changed_claims_at_the_provider_are_synced_and_rule_roles_revoked(
        browser: TestClient, ctx: ServiceContext, op: OpenIdProvider) -> None:
    sign_in(browser, "ana")
    op.set_account("ana", {**ANA, "groups": ["Porters"], "department": "Transport"})
    sign_in(browser, "ana")
    [view] = admin.list_accounts(ctx, "hospital")
    assert (sorted(view.account.roles), view.account.profile["department"],
            sorted(view.account.groups)) == (["staff"], "Transport", ["Porters"])


def test_two_users_get_two_accounts(browser: TestClient, ctx: ServiceContext) -> None:
    sign_in(browser, "ana")
    browser.cookies.clear()
    sign_in(browser, "ben")
    assert roles(ctx) == {"ana@hospital.example": ["nurse", "staff"],
                          "ben@hospital.example": ["staff"]}


def test_wrong_client_secret_is_a_clear_error_and_creates_nothing(
        browser: TestClient, ctx: ServiceContext) -> None:
    sealed = ctx.secretbox.seal({"client_secret": "not-the-secret"})
    with ctx.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE connection SET secrets = '" + sealed + "', version = version + 1 "
            "WHERE slug = 'okta'")
    ctx.connections.forget("okta")
    r = sign_in(browser, "ana")
    assert r.status_code == 400
    assert "invalid_client" in r.text
    assert admin.list_accounts(ctx, "hospital") == []
    failed = [e.data["code"] for e in audit_export.iter_events(ctx, "hospital")
              if e.type == "login.failed"]
    assert failed == ["token_error"]


def test_unknown_user_at_the_provider_is_refused_readably(browser: TestClient,
                                                          ctx: ServiceContext) -> None:
    r = sign_in(browser, "nobody")
    assert r.status_code == 400
    assert "access_denied" in r.text
    assert admin.list_accounts(ctx, "hospital") == []


@pytest.mark.parametrize("connection", ["okta-post", "okta-pkjwt"])
def test_other_client_authentication_methods_sign_in(browser: TestClient, ctx: ServiceContext,
                                                     connection: str) -> None:
    r = sign_in(browser, "ana", connection)
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["connection"] == connection


def test_registration_fails_early_for_a_wrong_issuer(ctx: ServiceContext,
                                                     op: OpenIdProvider) -> None:
    with pytest.raises(InvalidInput) as refused:
        admin.add_oidc_connection(
            ctx, tenant="hospital", slug="typo",
            config={"issuer": op.issuer + "/typo", "client_id": "okta"},
            client_secret=SECRET, mapping=None, mapping_source=None)
    assert "discovery document" in str(refused.value)
    with pytest.raises(Exception, match="no connection"):
        admin.get_connection(ctx, "typo")
