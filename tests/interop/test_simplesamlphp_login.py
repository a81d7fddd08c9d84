"""jitprov's SAML sign-in against SimpleSAMLphp (Debian's package, served by PHP's built-in
server on loopback), a second real IdP next to pysaml2: registration from its metadata URL,
SimpleSAMLphp configured from our SP metadata by its own parser, logins through its
``exampleauth:UserPass`` form.

SimpleSAMLphp trusts what the SP metadata says: ``AuthnRequestsSigned="true"`` makes it verify
the signature of every AuthnRequest and refuse an unsigned one ("no signature found on
message"), and with ``WantAssertionsSigned="false"`` (jitprov's default) it signs the Response
only, not the Assertion. Its own metadata does not say ``WantAuthnRequestsSigned``.

Skipped without PHP or the package, unless ``JITPROV_REQUIRE_INTEROP=1`` (CI), where it fails.
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
from tests.interop.saml_idp import SamlIdpError
from tests.interop.simplesamlphp_idp import (
    SimpleSamlPhpIdp,
    SimpleSamlPhpUnavailable,
    check_available,
)

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
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


@pytest.fixture(scope="module")
def php_runtime() -> None:
    try:
        check_available()
    except SimpleSamlPhpUnavailable as exc:
        if os.environ.get("JITPROV_REQUIRE_INTEROP") == "1":
            pytest.fail(f"SimpleSAMLphp unavailable (JITPROV_REQUIRE_INTEROP=1): {exc}")
        pytest.skip(f"SimpleSAMLphp unavailable: {exc}")


@pytest.fixture
def idp(php_runtime: None) -> Iterator[SimpleSamlPhpIdp]:
    users = {"ana": {"password": "ana-pw", "subject": "ana-0001", "attributes": ANA},
             "ben": {"password": "ben-pw", "subject": "ben-0002", "attributes": BEN}}
    with SimpleSamlPhpIdp(users=users) as running:
        yield running


@pytest.fixture
def ctx(database_url: str, idp: SimpleSamlPhpIdp) -> Iterator[ServiceContext]:
    http = httpx.Client(timeout=10)
    context = ServiceContext(db=Database.connect(database_url, pool_size=4),
                             secretbox=SecretBox(TEST_SECRET_KEY), http=http)
    admin.create_tenant(context, "hospital")
    admin.add_saml_connection(context, tenant="hospital", slug="ssp", metadata_xml=None,
                              metadata_url=idp.metadata_url, mapping=MAPPING,
                              mapping_source="ssp.yaml")
    yield context
    http.close()
    context.db.dispose()


@pytest.fixture
def browser(ctx: ServiceContext, idp: SimpleSamlPhpIdp) -> Iterator[TestClient]:
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        metadata = client.get("/sso/ssp/saml/metadata")
        assert metadata.status_code == 200
        idp.add_sp_metadata(metadata.content)  # what the admin gives the IdP
        yield client


def start(browser: TestClient, idp: SimpleSamlPhpIdp) -> str:
    r = browser.get("/sso/ssp/login", params={"return_to": "/me"})
    assert r.status_code == 303, r.text
    location: str = r.headers["location"]
    assert location.startswith(f"{idp.sso_url}?SAMLRequest=")
    return location


def sign_in(browser: TestClient, idp: SimpleSamlPhpIdp, user: str,
            password: str) -> httpx.Response:
    acs_url, fields = idp.sign_in(start(browser, idp), user, password)
    assert acs_url == f"{BASE_URL}/sso/ssp/saml/acs"
    return browser.post(acs_url, data=fields)


def accounts(ctx: ServiceContext) -> dict[str, tuple[str | None, list[str], list[str]]]:
    return {v.account.email or "": (v.account.profile.get("name"), sorted(v.account.roles),
                                    sorted(v.account.groups))
            for v in admin.list_accounts(ctx, "hospital")}


def test_registration_read_the_simplesamlphp_metadata(ctx: ServiceContext,
                                                      idp: SimpleSamlPhpIdp) -> None:
    conn = admin.get_connection(ctx, "ssp")
    assert conn.config["idp_entity_id"] == idp.entity_id
    assert conn.config["idp_sso_url"] == idp.sso_url
    # its metadata does not ask for signed requests; jitprov signs them all the same
    assert conn.config["want_authn_requests_signed"] is False


def test_first_login_creates_the_account(browser: TestClient, ctx: ServiceContext,
                                         idp: SimpleSamlPhpIdp) -> None:
    r = sign_in(browser, idp, "ana", "ana-pw")
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text
    me = browser.get("/me").json()
    assert (me["email"], me["name"], me["roles"], me["external_id"], me["connection"]) == (
        "ana@hospital.example", "Ana Lima", ["nurse", "staff"], "ana-0001", "ssp")
    assert me["attributes"] == {"department": "Ward 3"}
    assert sorted(me["groups"]) == ["All Staff", "Nurses"]


def test_simplesamlphp_signs_the_response_only_and_jitprov_accepts_it(
        browser: TestClient, ctx: ServiceContext, idp: SimpleSamlPhpIdp) -> None:
    _, fields = idp.sign_in(start(browser, idp), "ana", "ana-pw")
    root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assertion = root.find(f"{{{SAML}}}Assertion")
    assert root.find(f"{{{DS}}}Signature") is not None
    assert assertion is not None and assertion.find(f"{{{DS}}}Signature") is None
    r = browser.post(f"{BASE_URL}/sso/ssp/saml/acs", data=fields)
    assert r.status_code == 303, r.text
    [identity] = admin.list_accounts(ctx, "hospital")
    assert identity.account.email == "ana@hospital.example"


def test_second_login_does_not_duplicate(browser: TestClient, ctx: ServiceContext,
                                         idp: SimpleSamlPhpIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    browser.cookies.clear()
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert len(admin.list_accounts(ctx, "hospital")) == 1
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    assert types[-2:] == ["account.created", "login.succeeded"]
    assert browser.get("/me").json()["external_id"] == "ana-0001"


def test_an_attribute_change_is_synced_at_the_next_login(browser: TestClient,
                                                         ctx: ServiceContext,
                                                         idp: SimpleSamlPhpIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    idp.set_user("ana", "ana-pw", {**ANA, "displayName": ["Ana Lima-Souza"],
                                   "mail": ["ana.souza@hospital.example"]}, subject="ana-0001")
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert accounts(ctx) == {"ana.souza@hospital.example": (
        "Ana Lima-Souza", ["nurse", "staff"], ["All Staff", "Nurses"])}


def test_a_group_removed_at_the_idp_is_removed_with_its_role(browser: TestClient,
                                                            ctx: ServiceContext,
                                                            idp: SimpleSamlPhpIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    idp.set_user("ana", "ana-pw", {**ANA, "isMemberOf": ["All Staff"]}, subject="ana-0001")
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    assert accounts(ctx) == {"ana@hospital.example": ("Ana Lima", ["staff"], ["All Staff"])}


def test_two_users_get_two_accounts(browser: TestClient, ctx: ServiceContext,
                                    idp: SimpleSamlPhpIdp) -> None:
    assert sign_in(browser, idp, "ana", "ana-pw").status_code == 303
    browser.cookies.clear()
    assert sign_in(browser, idp, "ben", "ben-pw").status_code == 303
    assert browser.get("/me").json()["email"] == "ben@hospital.example"
    assert {k: v[1] for k, v in accounts(ctx).items()} == {
        "ana@hospital.example": ["nurse", "staff"], "ben@hospital.example": ["staff"]}


def test_a_wrong_password_creates_nothing(browser: TestClient, ctx: ServiceContext,
                                          idp: SimpleSamlPhpIdp) -> None:
    with pytest.raises(SamlIdpError, match=r"(?i)incorrect username or password"):
        sign_in(browser, idp, "ana", "not-her-password")
    assert admin.list_accounts(ctx, "hospital") == []
    assert browser.get("/me").status_code == 401


def test_an_unsigned_authn_request_is_refused_by_simplesamlphp(
        browser: TestClient, idp: SimpleSamlPhpIdp) -> None:
    """The failure jitprov used to cause: the SP metadata promises signed requests, so
    SimpleSAMLphp refuses one whose signature was taken off; the signed one goes through."""
    location = start(browser, idp)
    assert "&SigAlg=" in location and "&Signature=" in location
    with pytest.raises(SamlIdpError, match=r"(?i)no signature found on message"):
        idp.sign_in(location.split("&SigAlg=")[0], "ana", "ana-pw")
    acs_url, fields = idp.sign_in(location, "ana", "ana-pw")
    assert browser.post(acs_url, data=fields).status_code == 303


def test_a_replayed_response_is_refused(browser: TestClient, ctx: ServiceContext,
                                        idp: SimpleSamlPhpIdp) -> None:
    acs_url, fields = idp.sign_in(start(browser, idp), "ana", "ana-pw")
    assert browser.post(acs_url, data=fields).status_code == 303
    again = browser.post(acs_url, data={**fields, "jitprov_bounce": "1"})
    assert again.status_code == 400
    assert len(admin.list_accounts(ctx, "hospital")) == 1


@contextmanager
def connected(ctx: ServiceContext, idp: SimpleSamlPhpIdp, slug: str,
              **options: object) -> Iterator[tuple[TestClient, bytes]]:
    """Connection ``slug`` to ``idp`` with ``options``, its SP metadata given to the IdP; a
    test client on an app over ``ctx``, and that metadata."""
    admin.add_saml_connection(ctx, tenant="hospital", slug=slug, metadata_xml=None,
                              metadata_url=idp.metadata_url, mapping=MAPPING,
                              mapping_source="ssp.yaml", options=options)
    settings = Settings(base_url=BASE_URL, secret_key=TEST_SECRET_KEY)
    with TestClient(create_app(settings, ctx=ctx), base_url=BASE_URL,
                    raise_server_exceptions=False, follow_redirects=False) as client:
        metadata = client.get(f"/sso/{slug}/saml/metadata").content
        idp.add_sp_metadata(metadata)
        yield client, metadata


def test_with_require_signed_assertion_simplesamlphp_signs_the_assertion_too(
        ctx: ServiceContext, idp: SimpleSamlPhpIdp) -> None:
    """The README's claim: SimpleSAMLphp reads ``WantAssertionsSigned="true"`` from the SP
    metadata of a ``require_signed_assertion`` connection and signs the Assertion as well."""
    with connected(ctx, idp, "ssp-strict", require_signed_assertion=True) as (client, metadata):
        assert b'WantAssertionsSigned="true"' in metadata
        start = client.get("/sso/ssp-strict/login", params={"return_to": "/me"})
        acs_url, fields = idp.sign_in(start.headers["location"], "ana", "ana-pw")
        root = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
        assertion = root.find(f"{{{SAML}}}Assertion")
        assert assertion is not None and assertion.find(f"{{{DS}}}Signature") is not None
        r = client.post(acs_url, data=fields)
        assert r.status_code == 303, r.text
        assert client.get("/me").json()["connection"] == "ssp-strict"


def test_unsigned_authn_requests_are_accepted_once_the_metadata_says_so(
        ctx: ServiceContext, idp: SimpleSamlPhpIdp) -> None:
    """A ``sign_authn_requests: false`` connection: SimpleSAMLphp reads
    ``AuthnRequestsSigned="false"`` from its SP metadata and takes the unsigned request."""
    with connected(ctx, idp, "ssp-lean", sign_authn_requests=False) as (client, metadata):
        assert b'AuthnRequestsSigned="false"' in metadata
        location = client.get("/sso/ssp-lean/login",
                              params={"return_to": "/me"}).headers["location"]
        assert "SigAlg=" not in location and "Signature=" not in location
        acs_url, fields = idp.sign_in(location, "ana", "ana-pw")
        r = client.post(acs_url, data=fields)
        assert r.status_code == 303, r.text
        assert client.get("/me").json()["connection"] == "ssp-lean"
