"""MFA required per connection against a real, certified OpenID Provider (panva/oidc-provider)
on loopback: the authorization request carries ``acr_values``, the ID token's ``acr``/``amr``
(set by the OP from how the user signed in) decide, and reach the mapping as the claim
``auth_context``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export, mapping_preview
from jitprov.services.context import ServiceContext
from jitprov.services.outbound import guarded_client, policy_from
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.interop.oidc_op import OpenIdProvider, complete_login

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the test client serves the app
SECRET = "op-client-secret-0123456789"
LOA_2FA = "urn:example:loa:2fa"  # an Okta-like acr ("urn:okta:loa:2fa:any")
LOA_1FA = "urn:example:loa:1fa"
ANA = {"email": "ana@hospital.example", "email_verified": True, "name": "Ana Lima",
       "groups": ["Nurses"]}
MAPPING = """\
profile:
  email: email
  name: name
groups: groups
roles:
  default: [staff]
  rules:
    - id: mfa-admins
      grant: [admin]
      when: contains(auth_context.amr, 'mfa')
    - id: strong-acr
      grant: [auditor]
      when: "auth_context.acr == 'urn:example:loa:2fa'"
"""


def client_metadata(client_id: str) -> dict[str, object]:
    return {"client_id": client_id, "client_secret": SECRET,
            "redirect_uris": [f"{BASE_URL}/sso/{client_id}/oidc/callback"],
            "grant_types": ["authorization_code"], "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic"}


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    with OpenIdProvider(clients=[client_metadata("strict"), client_metadata("open")],
                        accounts={"ana": ANA}, acr_values=[LOA_1FA, LOA_2FA]) as provider:
        yield provider


@pytest.fixture
def ctx(database_url: str, op: OpenIdProvider) -> Iterator[ServiceContext]:
    # the server's own client (the outbound guard, loopback allowlisted): the callback
    # awaits the provider through it on the event loop, as under `serve`
    http = guarded_client(policy_from(["127.0.0.1/32"], allow_private=False))
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    for slug, mfa in (("strict", {"require_mfa": True,
                                  "accepted_auth_contexts": [LOA_2FA, "mfa"]}),
                      ("open", {})):
        admin.add_oidc_connection(
            context, tenant="hospital", slug=slug,
            config={"issuer": op.issuer, "client_id": slug,
                    "scopes": ["openid", "email", "profile", "groups"], **mfa},
            client_secret=SECRET, mapping=MAPPING, mapping_source="mfa.yaml")
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def authorize_url(browser: TestClient, connection: str) -> str:
    start = browser.get(f"/sso/{connection}/login", params={"return_to": "/me"})
    assert start.status_code == 303, start.text
    return str(start.headers["location"])


def sign_in(browser: TestClient, connection: str, *, acr: str | None = None,
            amr: tuple[str, ...] = ()) -> Any:  # the test client's response
    callback = complete_login(authorize_url(browser, connection), "ana", acr=acr, amr=amr)
    assert callback.startswith(f"{BASE_URL}/sso/{connection}/oidc/callback?"), callback
    return browser.get(callback)


def recorded_auth_context(ctx: ServiceContext, connection: str) -> object:
    return mapping_preview.recorded_login(ctx, connection, "ana").claims["auth_context"]


def test_the_authorization_request_carries_the_accepted_acr_values(
        browser: TestClient, op: OpenIdProvider) -> None:
    """The amr name ``mfa`` is not an acr: only the acr value is requested, and the OP
    received it (its interaction shows the request's acr_values)."""
    url = authorize_url(browser, "strict")
    assert parse_qs(urlsplit(url).query)["acr_values"] == [LOA_2FA]
    with httpx.Client(follow_redirects=True, timeout=10, trust_env=False) as client:
        interaction = client.get(url)
    assert interaction.json()["acr_values"] == LOA_2FA
    assert "acr_values" not in parse_qs(urlsplit(authorize_url(browser, "open")).query)


def test_required_and_satisfied_by_the_acr_signs_in(browser: TestClient,
                                                    ctx: ServiceContext) -> None:
    r = sign_in(browser, "strict", acr=LOA_2FA, amr=("pwd", "otp"))
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text
    assert browser.get("/me").json()["roles"] == ["auditor", "staff"]
    assert recorded_auth_context(ctx, "strict") == {"acr": LOA_2FA, "amr": ["pwd", "otp"],
                                                    "class_refs": []}


def test_required_and_satisfied_by_the_amr_signs_in_with_the_role_of_a_rule(
        browser: TestClient, ctx: ServiceContext) -> None:
    r = sign_in(browser, "strict", acr=LOA_1FA, amr=("pwd", "mfa"))
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["roles"] == ["admin", "staff"]


def test_required_and_not_satisfied_is_refused_readably_and_creates_nothing(
        browser: TestClient, ctx: ServiceContext) -> None:
    r = sign_in(browser, "strict", acr=LOA_1FA, amr=("pwd",))
    assert r.status_code == 403
    assert "needs multi-factor authentication" in r.text
    assert f"acr {LOA_1FA}" in r.text and r.headers["x-request-id"] in r.text
    assert admin.list_accounts(ctx, "hospital") == []
    [denied] = [e for e in audit_export.iter_events(ctx, "hospital")
                if e.type == "login.denied"]
    assert (denied.data["code"], denied.data["subject"], denied.request_id) == (
        "mfa_required", "ana", r.headers["x-request-id"])


def test_not_required_the_claim_is_there_and_the_login_works(browser: TestClient,
                                                             ctx: ServiceContext) -> None:
    r = sign_in(browser, "open", amr=("pwd",))
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["roles"] == ["staff"]
    assert recorded_auth_context(ctx, "open") == {"acr": None, "amr": ["pwd"],
                                                  "class_refs": []}
