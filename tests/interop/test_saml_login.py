"""jitprov's SAML sign-in against a real SAML IdP we did not write (pysaml2's ``Server``,
signing with the xmlsec1 binary) on loopback: registration from its metadata URL, then logins
through its username/password form. Our HTTP app runs in-process; the IdP is a real server.
Every login test runs twice: with the IdP signing the Assertion only, and signing the Response
only (Keycloak's default, an ADFS/Shibboleth option), which jitprov accepts unless the
connection sets ``require_signed_assertion``.

Skipped without pysaml2 or xmlsec1, unless ``JITPROV_REQUIRE_INTEROP=1`` (CI), where it fails.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from lxml import etree
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY
from tests.interop.saml_idp import SamlIdp, SamlIdpError, SamlIdpUnavailable, check_available

pytestmark = [pytest.mark.slow]

BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the test client serves the app
MAPPING = """\
profile:
  email: mail
  name: displayName
  department: ou
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(isMemberOf, 'Nurses')
"""
ANA = {"mail": ["ana@hospital.example"], "displayName": ["Ana Lima"], "ou": ["Ward 3"],
       "isMemberOf": ["Nurses", "All Staff"]}
BEN = {"mail": ["ben@hospital.example"], "displayName": ["Ben Okafor"], "ou": ["Pharmacy"],
       "isMemberOf": ["Pharmacists"]}


@pytest.fixture(scope="module")
def idp_runtime() -> None:
    try:
        check_available()
    except SamlIdpUnavailable as exc:
        if os.environ.get("JITPROV_REQUIRE_INTEROP") == "1":
            pytest.fail(f"SAML interop IdP unavailable (JITPROV_REQUIRE_INTEROP=1): {exc}")
        pytest.skip(f"SAML interop IdP unavailable: {exc}")


USERS = {"ana": {"password": "ana-pw", "subject": "ana-0001", "attributes": ANA},
         "ben": {"password": "ben-pw", "subject": "ben-0002", "attributes": BEN}}
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


@pytest.fixture(params=["signs-assertion", "signs-response-only"])
def idp(request: pytest.FixtureRequest, idp_runtime: None) -> Iterator[SamlIdp]:
    response_only = request.param == "signs-response-only"
    with SamlIdp(users=USERS, sign_assertion=not response_only,
                 sign_response=response_only) as running:
        yield running


@pytest.fixture
def ctx(database_url: str, idp: SamlIdp) -> Iterator[ServiceContext]:
    http = httpx.Client(timeout=10)
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    admin.add_saml_connection(context, tenant="hospital", slug="shib", metadata_xml=None,
                              metadata_url=idp.metadata_url, mapping=MAPPING,
                              mapping_source="shib.yaml")
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext, idp: SamlIdp) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        metadata = client.get("/sso/shib/saml/metadata")
        assert metadata.status_code == 200
        idp.add_sp_metadata(metadata.content)  # what the admin gives the IdP
        yield client


def sign_in(browser: TestClient, idp: SamlIdp, user: str, password: str) -> httpx.Response:
    start = browser.get("/sso/shib/login", params={"return_to": "/me"})
    assert start.status_code == 303, start.text
    assert start.headers["location"].startswith(f"{idp.base_url}/sso/redirect?SAMLRequest=")
    acs_url, fields = idp.sign_in(start.headers["location"], user, password)
    assert acs_url == f"{BASE_URL}/sso/shib/saml/acs"
    return browser.post(acs_url, data=fields)


def accounts(ctx: ServiceContext) -> dict[str, tuple[str | None, list[str], list[str]]]:
    return {v.account.email or "": (v.account.profile.get("name"), sorted(v.account.roles),
                                    sorted(v.account.groups))
            for v in admin.list_accounts(ctx, "hospital")}


def test_registration_read_the_idp_metadata_url(ctx: ServiceContext, idp: SamlIdp) -> None:
    conn = admin.get_connection(ctx, "shib")
    assert conn.config["idp_entity_id"] == idp.metadata_url
    assert conn.config["idp_sso_url"] == f"{idp.base_url}/sso/redirect"
    assert conn.config["metadata_url"] == idp.metadata_url


def test_first_login_creates_the_account_with_mapped_roles(browser: TestClient,
                                                           ctx: ServiceContext,
                                                           idp: SamlIdp) -> None:
    r = sign_in(browser, idp, "ana", "ana-pw")
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text
    me = browser.get("/me").json()
    assert (me["email"], me["name"], me["roles"], me["external_id"], me["connection"]) == (
        "ana@hospital.example", "Ana Lima", ["nurse", "staff"], "ana-0001", "shib")
    assert me["attributes"] == {"department": "Ward 3"}
    assert sorted(me["groups"]) == ["All Staff", "Nurses"]


def test_second_login_does_not_duplicate(browser: TestClient, ctx: ServiceContext,
                                         idp: SamlIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    browser.cookies.clear()
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types[-2:] == ["account.created", "login.succeeded"]


def test_an_attribute_change_at_the_idp_is_synced_at_the_next_login(
        browser: TestClient, ctx: ServiceContext, idp: SamlIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    idp.set_user("ana", "ana-pw", {**ANA, "displayName": ["Ana Lima-Souza"],
                                   "isMemberOf": ["Porters"]}, subject="ana-0001")
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert accounts(ctx) == {"ana@hospital.example": ("Ana Lima-Souza", ["staff"],
                                                      ["Porters"])}


def test_two_users_get_two_accounts(browser: TestClient, ctx: ServiceContext,
                                    idp: SamlIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    browser.cookies.clear()
    assert sign_in(browser, idp, "ben", "ben-pw").status_code == 303
    assert browser.get("/me").json()["email"] == "ben@hospital.example"
    assert {k: v[1] for k, v in accounts(ctx).items()} == {
        "ana@hospital.example": ["nurse", "staff"], "ben@hospital.example": ["staff"]}


def test_a_wrong_password_creates_nothing(browser: TestClient, ctx: ServiceContext,
                                          idp: SamlIdp) -> None:
    with pytest.raises(SamlIdpError, match="wrong username or password"):
        sign_in(browser, idp, "ana", "not-her-password")
    assert admin.list_accounts(ctx, "hospital") == []
    assert browser.get("/me").status_code == 401


def test_the_idp_response_cannot_be_replayed(browser: TestClient, ctx: ServiceContext,
                                             idp: SamlIdp) -> None:
    start = browser.get("/sso/shib/login", params={"return_to": "/me"})
    acs_url, fields = idp.sign_in(start.headers["location"], "ana", "ana-pw")
    assert browser.post(acs_url, data=fields).status_code == 303
    again = browser.post(acs_url, data={**fields, "jitprov_bounce": "1"})
    assert again.status_code == 400
    assert len(admin.list_accounts(ctx, "hospital")) == 1


@contextmanager
def served(idp: SamlIdp, database_url: str,
           **options: object) -> Iterator[tuple[ServiceContext, TestClient]]:
    """A tenant ``hospital`` with connection ``shib`` to ``idp`` (from its metadata URL, with
    ``options``), and a test client on an app over it; the database let go after."""
    with httpx.Client(timeout=10) as http:
        context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                                 secretbox=SecretBox(TEST_SECRET_KEY), http=http)
        try:
            admin.create_tenant(context, "hospital")
            admin.add_saml_connection(
                context, tenant="hospital", slug="shib", metadata_xml=None,
                metadata_url=idp.metadata_url, mapping=MAPPING, mapping_source="shib.yaml",
                options=options)
            settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
            with TestClient(create_app(settings, ctx=context), base_url=BASE_URL,
                            raise_server_exceptions=False, follow_redirects=False) as client:
                yield context, client
        finally:
            context.db.dispose()


def test_signed_authn_requests_verify_at_the_idp(idp_runtime: None, database_url: str) -> None:
    """An IdP whose metadata says WantAuthnRequestsSigned: jitprov signs the HTTP-Redirect
    AuthnRequest (rsa-sha256 over the query string) and pysaml2 verifies it with the
    certificate of our SP metadata; it refuses the same request with the signature removed."""
    users = {"ana": {"password": "ana-pw", "subject": "ana-0001", "attributes": ANA}}
    with SamlIdp(users=users, want_authn_requests_signed=True) as signing_idp, \
            served(signing_idp, database_url) as (context, client):
        assert admin.get_connection(context, "shib").config["want_authn_requests_signed"] is True
        signing_idp.add_sp_metadata(client.get("/sso/shib/saml/metadata").content)
        start = client.get("/sso/shib/login", params={"return_to": "/me"})
        location = start.headers["location"]
        assert "&SigAlg=" in location and "&Signature=" in location
        unsigned = location.split("&SigAlg=")[0]
        with pytest.raises(SamlIdpError, match="400"):
            signing_idp.sign_in(unsigned, "ana", "ana-pw")
        acs_url, fields = signing_idp.sign_in(location, "ana", "ana-pw")
        assert client.post(acs_url, data=fields).status_code == 303
        assert client.get("/me").json()["email"] == "ana@hospital.example"


@pytest.mark.parametrize("idp_asks", [False, True])
def test_unsigned_authn_requests_sign_in_unless_the_idp_asks(
        idp_runtime: None, database_url: str, idp_asks: bool) -> None:
    """A connection with ``sign_authn_requests: false``: an IdP that does not ask gets the
    AuthnRequest unsigned and signs the person in; one whose metadata says
    WantAuthnRequestsSigned still gets it signed, verifies it, and signs the person in."""
    users = {"ana": {"password": "ana-pw", "subject": "ana-0001", "attributes": ANA}}
    with SamlIdp(users=users, want_authn_requests_signed=idp_asks) as real_idp, \
            served(real_idp, database_url, sign_authn_requests=False) as (_, client):
        sp_metadata = client.get("/sso/shib/saml/metadata").content
        assert (b'AuthnRequestsSigned="true"' if idp_asks
                else b'AuthnRequestsSigned="false"') in sp_metadata
        real_idp.add_sp_metadata(sp_metadata)
        location = client.get("/sso/shib/login", params={"return_to": "/me"}).headers["location"]
        assert ("&Signature=" in location) is idp_asks
        acs_url, fields = real_idp.sign_in(location, "ana", "ana-pw")
        assert client.post(acs_url, data=fields).status_code == 303
        assert client.get("/me").json()["email"] == "ana@hospital.example"


def test_the_idp_signs_what_the_test_says(browser: TestClient, idp: SamlIdp) -> None:
    """The two modes really differ: the Response-only IdP's assertion carries no signature."""
    start = browser.get("/sso/shib/login", params={"return_to": "/me"})
    assert "&SigAlg=" in start.headers["location"]  # signed, though pysaml2 did not ask
    _, fields = idp.sign_in(start.headers["location"], "ana", "ana-pw")
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assertion = root.find(f"{{{SAML}}}Assertion")
    assert assertion is not None
    assert (root.find(f"{{{DS}}}Signature") is not None,
            assertion.find(f"{{{DS}}}Signature") is not None) == (
        idp.sign_response, idp.sign_assertion)


def test_a_group_removed_at_the_idp_takes_its_role_away(browser: TestClient,
                                                        ctx: ServiceContext,
                                                        idp: SamlIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    idp.set_user("ana", "ana-pw", {**ANA, "isMemberOf": ["All Staff"]}, subject="ana-0001")
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert accounts(ctx) == {"ana@hospital.example": ("Ana Lima", ["staff"], ["All Staff"])}


def test_require_signed_assertion_refuses_a_response_only_idp(idp_runtime: None,
                                                              database_url: str) -> None:
    """With ``require_signed_assertion`` the SP metadata says WantAssertionsSigned="true"; an
    IdP that signs the Response only is then refused with a readable page and a
    ``login.failed`` event, and nothing is created."""
    with SamlIdp(users=USERS, sign_assertion=False, sign_response=True) as response_only, \
            served(response_only, database_url,
                   require_signed_assertion=True) as (context, client):
        metadata = client.get("/sso/shib/saml/metadata").content
        assert b'WantAssertionsSigned="true"' in metadata
        response_only.add_sp_metadata(metadata)
        r = sign_in(client, response_only, "ana", "ana-pw")
        assert r.status_code == 400
        assert "requires a signed Assertion" in r.text
        assert r.headers["x-request-id"] in r.text
        event = list(audit_export.iter_events(context, "hospital"))[-1]
        assert (event.type, event.data["code"], event.request_id) == (
            "login.failed", "signature_missing", r.headers["x-request-id"])
        assert admin.list_accounts(context, "hospital") == []
