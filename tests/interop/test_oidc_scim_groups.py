"""An OIDC login against the real oidc-provider sees ``scim_groups``: a SCIM client puts the
person (externalId: the subject the provider will send) in group Pharmacy, and a rule
``contains(scim_groups, 'Pharmacy')`` grants at that login; a SCIM PATCH then revokes at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.outbound import guarded_client, policy_from
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.interop.oidc_op import OpenIdProvider, complete_login
from tests.web.scim_helpers import GROUP_SCHEMA, Scim, patch, scim_token, user

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the test client serves the app
SECRET = "op-client-secret-0123456789"
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
    - id: pharmacy
      grant: [pharmacist]
      when: contains(scim_groups, 'Pharmacy')
linking:
  by_email: never
"""


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    client = {"client_id": "okta", "client_secret": SECRET,
              "redirect_uris": [f"{BASE_URL}/sso/okta/oidc/callback"],
              "grant_types": ["authorization_code"], "response_types": ["code"],
              "token_endpoint_auth_method": "client_secret_basic"}
    with OpenIdProvider(clients=[client], accounts={"ana": ANA}) as provider:
        yield provider


@pytest.fixture
def ctx(database_url: str, op: OpenIdProvider) -> Iterator[ServiceContext]:
    # the server's own client (the outbound guard, loopback allowlisted): the callback
    # awaits the provider through it on the event loop, as under `serve`
    http = guarded_client(policy_from(["127.0.0.1/32"], allow_private=False))
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    admin.add_oidc_connection(
        context, tenant="hospital", slug="okta",
        config={"issuer": op.issuer, "client_id": "okta",
                "scopes": ["openid", "email", "profile", "groups"]},
        client_secret=SECRET, mapping=MAPPING, mapping_source="pharmacy.yaml")
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def test_an_oidc_login_grants_from_scim_groups_and_a_patch_revokes(
        browser: TestClient, ctx: ServiceContext) -> None:
    scim = Scim(browser, scim_token(ctx, connection="okta"))
    user_id = scim.post("/Users", user("ana@hospital.example", externalId="ana")).json()["id"]
    r = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Pharmacy",
                              "members": [{"value": user_id}]})
    assert r.status_code == 201, r.text

    start = browser.get("/sso/okta/login", params={"return_to": "/me"})
    assert start.status_code == 303, start.text
    callback = browser.get(complete_login(start.headers["location"], "ana"))
    assert callback.status_code == 303, callback.text
    me = browser.get("/me").json()
    assert (me["id"], me["roles"]) == (user_id, ["pharmacist", "staff"])
    assert browser.get("/auth/verify").headers["x-jitprov-roles"] == "pharmacist,staff"

    r = scim.patch(f"/Groups/{r.json()['id']}", patch(
        {"op": "remove", "path": f'members[value eq "{user_id}"]'}))
    assert r.status_code == 204, r.text
    assert browser.get("/auth/verify").headers["x-jitprov-roles"] == "staff"
