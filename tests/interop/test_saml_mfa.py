"""MFA required per connection against a real SAML IdP we did not write (pysaml2's ``Server``)
on loopback: the signed AuthnRequest carries ``RequestedAuthnContext`` (pysaml2 verifies the
signature and reads it), the assertion's AuthnContextClassRef (Password, or
MobileTwoFactorContract when the user typed their one-time code) decides, and reaches the
mapping as the claim ``auth_context``.

Skipped without pysaml2 or xmlsec1, unless ``JITPROV_REQUIRE_INTEROP=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export, mapping_preview
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.interop.saml_idp import SamlIdp, SamlIdpUnavailable, check_available

pytestmark = [pytest.mark.slow]

BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the test client serves the app
TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
MAPPING = f"""\
profile:
  email: mail
  name: displayName
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - id: two-factor-admins
      grant: [admin]
      when: contains(auth_context.class_refs, '{TWO_FACTOR}')
"""
USERS = {"ana": {"password": "ana-pw", "subject": "ana-0001", "otp": "246810",
                 "attributes": {"mail": ["ana@hospital.example"], "displayName": ["Ana Lima"],
                                "isMemberOf": ["Nurses"]}}}


@pytest.fixture(scope="module")
def idp_runtime() -> None:
    try:
        check_available()
    except SamlIdpUnavailable as exc:
        if os.environ.get("JITPROV_REQUIRE_INTEROP") == "1":
            pytest.fail(f"SAML interop IdP unavailable (JITPROV_REQUIRE_INTEROP=1): {exc}")
        pytest.skip(f"SAML interop IdP unavailable: {exc}")


@pytest.fixture
def idp(idp_runtime: None) -> Iterator[SamlIdp]:
    # it verifies the AuthnRequest's signature against the SP metadata's certificate
    with SamlIdp(users=USERS, want_authn_requests_signed=True) as running:
        yield running


@pytest.fixture
def ctx(database_url: str, idp: SamlIdp) -> Iterator[ServiceContext]:
    http = httpx.Client(timeout=10)
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    for slug, options in (("strict", {"require_mfa": True,
                                      "accepted_auth_contexts": [TWO_FACTOR]}),
                          ("open", {})):
        admin.add_saml_connection(context, tenant="hospital", slug=slug, metadata_xml=None,
                                  metadata_url=idp.metadata_url, mapping=MAPPING,
                                  mapping_source="mfa.yaml", options=options)
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext, idp: SamlIdp) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        for slug in ("strict", "open"):
            idp.add_sp_metadata(client.get(f"/sso/{slug}/saml/metadata").content)
        yield client


def sign_in(browser: TestClient, idp: SamlIdp, connection: str, *,
            otp: str | None = None) -> Any:  # the test client's response
    start = browser.get(f"/sso/{connection}/login", params={"return_to": "/me"})
    assert start.status_code == 303, start.text
    acs_url, fields = idp.sign_in(start.headers["location"], "ana", "ana-pw", otp=otp)
    assert acs_url == f"{BASE_URL}/sso/{connection}/saml/acs"
    return browser.post(acs_url, data=fields, headers={"accept": "text/html"})


def test_the_signed_authn_request_asks_for_the_accepted_class_ref(
        browser: TestClient, idp: SamlIdp) -> None:
    sign_in(browser, idp, "strict", otp="246810")
    assert idp.requested_authn_context == f"exact: {TWO_FACTOR}"
    browser.cookies.clear()
    sign_in(browser, idp, "open")
    assert idp.requested_authn_context == ""


def test_required_and_satisfied_signs_in_with_the_role_of_a_rule(
        browser: TestClient, idp: SamlIdp, ctx: ServiceContext) -> None:
    r = sign_in(browser, idp, "strict", otp="246810")
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text
    assert browser.get("/me").json()["roles"] == ["admin", "staff"]
    recorded = mapping_preview.recorded_login(ctx, "strict", "ana-0001").claims
    assert recorded["auth_context"] == {"acr": None, "amr": [], "class_refs": [TWO_FACTOR]}


def test_required_and_not_satisfied_is_refused_readably_and_creates_nothing(
        browser: TestClient, idp: SamlIdp, ctx: ServiceContext) -> None:
    """pysaml2 does not refuse what it cannot satisfy: it answers Password, and jitprov
    refuses."""
    r = sign_in(browser, idp, "strict")
    assert r.status_code == 403
    assert "needs multi-factor authentication" in r.text and PASSWORD in r.text
    assert admin.list_accounts(ctx, "hospital") == []
    event = list(audit_export.iter_events(ctx, "hospital"))[-1]
    assert (event.type, event.data["code"], event.request_id) == (
        "login.denied", "mfa_required", r.headers["x-request-id"])


def test_not_required_the_claim_is_there_and_the_login_works(
        browser: TestClient, idp: SamlIdp, ctx: ServiceContext) -> None:
    r = sign_in(browser, idp, "open")
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["roles"] == ["staff"]
    recorded = mapping_preview.recorded_login(ctx, "open", "ana-0001").claims
    assert recorded["auth_context"] == {"acr": None, "amr": [], "class_refs": [PASSWORD]}
