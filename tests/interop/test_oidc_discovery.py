"""Home-realm discovery into a real OpenID Provider (panva/oidc-provider on loopback): the
email typed at ``/sso/discover`` reaches the provider's authorization request as
``login_hint`` (the provider's own interaction details say so), and the sign-in completes."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, discovery
from jitprov.services.context import ServiceContext
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
ANA = {"email": "ana@hospital.example", "email_verified": True, "name": "Ana Lima",
       "department": "Ward 3", "groups": ["Nurses"]}


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    client = {"client_id": "okta", "client_secret": SECRET,
              "redirect_uris": [f"{BASE_URL}/sso/okta/oidc/callback"],
              "grant_types": ["authorization_code"], "response_types": ["code"],
              "token_endpoint_auth_method": "client_secret_basic"}
    with OpenIdProvider(clients=[client], accounts={"ana": ANA}) as provider:
        yield provider


@pytest.fixture
def browser(database_url: str, op: OpenIdProvider) -> Iterator[TestClient]:
    http = httpx.Client(timeout=10)
    ctx = ServiceContext(db=Database.connect(database_url, pool_size=4),
                         secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(ctx, "hospital")
    admin.add_oidc_connection(
        ctx, tenant="hospital", slug="okta",
        config={"issuer": op.issuer, "client_id": "okta",
                "scopes": ["openid", "email", "profile", "groups"]},
        client_secret=SECRET, mapping=HOSPITAL.format(linking="never"),
        mapping_source="hospital.yaml")
    discovery.add_domain(ctx, "hospital", "hospital.example", connection="okta")
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client
    http.close()
    ctx.db.dispose()


def provider_interaction(authorize_url: str) -> dict[str, object]:
    """What the provider shows at its login prompt for ``authorize_url`` (its JSON
    interaction details: the parameters it received)."""
    with httpx.Client(follow_redirects=False, timeout=10, trust_env=False) as client:
        response = client.get(authorize_url)
        while response.is_redirect:
            response = client.get(urljoin(str(response.url), response.headers["location"]))
        assert urlsplit(str(response.url)).path.startswith("/interaction/"), response.text
        details: dict[str, object] = response.json()
        return details


def test_the_discovered_email_reaches_the_provider_as_login_hint(browser: TestClient,
                                                                 op: OpenIdProvider) -> None:
    found = browser.post("/sso/discover", data={"email": "Ana@Hospital.EXAMPLE",
                                                "return_to": "/me"})
    assert found.status_code == 303
    start = browser.get(found.headers["location"])
    assert start.status_code == 303
    authorize = start.headers["location"]
    assert authorize.startswith(op.issuer)
    assert parse_qs(urlsplit(authorize).query)["login_hint"] == ["Ana@Hospital.EXAMPLE"]
    details = provider_interaction(authorize)
    assert (details["prompt"], details["login_hint"]) == ("login", "Ana@Hospital.EXAMPLE")
    callback = browser.get(complete_login(authorize, "ana"))
    assert (callback.status_code, callback.headers["location"]) == (303, "/me")
    assert browser.get("/me").json()["email"] == "ana@hospital.example"


def test_a_login_not_started_by_discovery_sends_no_login_hint(browser: TestClient) -> None:
    start = browser.get("/sso/okta/login", params={"return_to": "/me"})
    authorize = start.headers["location"]
    assert "login_hint" not in parse_qs(urlsplit(authorize).query)
    assert provider_interaction(authorize)["login_hint"] is None
