"""The SAML routes over HTTP: login redirect, SP metadata, the ACS and its same-site bounce
(the IdP's cross-site POST arrives without our SameSite=Lax binding cookie), the error page,
and the admin API route."""

from __future__ import annotations

import base64
import datetime as dt
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from starlette.testclient import TestClient

from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.store import tables as t
from jitprov.testing.saml_idp import BASE_URL, FakeSamlIdp, ada, add_connection, request_id_of
from tests.pipelines import spy_pipelines
from tests.web.helpers import hidden_fields, make_client

ACS_PATH = "/sso/idp/saml/acs"
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "saml"
ACS = BASE_URL + ACS_PATH
AUDIENCE = f"{BASE_URL}/sso/idp/saml/metadata"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"


@pytest.fixture
def idp(ctx: ServiceContext) -> FakeSamlIdp:
    return add_connection(ctx)


@pytest.fixture
def browser(ctx: ServiceContext, idp: FakeSamlIdp) -> TestClient:
    return make_client(ctx, dev_mode=False)


def start(client: TestClient, return_to: str = "/me") -> tuple[str, str]:
    """(RelayState, AuthnRequest ID) of a login started by ``client``."""
    r = client.get("/sso/idp/login", params={"return_to": return_to})
    assert r.status_code == 303
    location = r.headers["location"]
    relay_state = parse_qs(urlsplit(location).query)["RelayState"][0]
    return relay_state, request_id_of(location)


def response(ctx: ServiceContext, idp: FakeSamlIdp, request_id: str | None, **kw: object) -> str:
    return idp.response(acs_url=ACS, audience=AUDIENCE, subject="ada", attributes=ada(),
                        in_response_to=request_id, now=ctx.clock(), **kw)  # type: ignore[arg-type]


def cross_site(client: TestClient) -> TestClient:
    """The same app, as the browser's cross-site POST reaches it: no SameSite=Lax cookie."""
    return TestClient(client.app, base_url=BASE_URL, raise_server_exceptions=False,
                      follow_redirects=False)


def counts(ctx: ServiceContext) -> tuple[int, int]:
    with ctx.db.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (t.account, t.session))


def last_event(ctx: ServiceContext) -> tuple[str, object, object]:
    event = list(audit_export.iter_events(ctx, "hospital"))[-1]
    return event.type, event.data.get("code"), event.request_id


def assert_acs_headers(r: object) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"


def test_login_sends_the_browser_to_the_idp_with_a_lax_binding_cookie(
        browser: TestClient) -> None:
    r = browser.get("/sso/idp/login", params={"return_to": "/me"})
    assert r.status_code == 303
    assert r.headers["location"].startswith("https://idp.test.example/sso?SAMLRequest=")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("jitprov_login_")
    assert "samesite=lax" in cookie.lower() and "path=/sso/" in cookie.lower()


def idp_metadata(wants_signed_requests: str | None) -> bytes:
    """The fake IdP's metadata, saying WantAuthnRequestsSigned as given (None: nothing)."""
    metadata = FakeSamlIdp().metadata()
    if wants_signed_requests is None:
        return metadata
    return metadata.replace(b"<md:IDPSSODescriptor ", b"<md:IDPSSODescriptor "
                            b'WantAuthnRequestsSigned="%s" ' % wants_signed_requests.encode())


def authn_requests_signed(client: TestClient, slug: str) -> bool:
    """What the SP metadata of ``slug`` says of its AuthnRequests, checked against one the
    login start sends: signed (SigAlg, then a Signature over the exact query string that
    verifies with the SP metadata's certificate) exactly when the metadata promises it."""
    sp_metadata = etree.fromstring(client.get(f"/sso/{slug}/saml/metadata").content)
    descriptor = sp_metadata.find(f"{{{MD}}}SPSSODescriptor")
    promised = descriptor.get("AuthnRequestsSigned")
    assert promised in ("true", "false")
    location = client.get(f"/sso/{slug}/login", params={"return_to": "/me"}).headers["location"]
    query = urlsplit(location).query
    if promised == "false":
        assert [part.split("=", 1)[0] for part in query.split("&")] == [
            "SAMLRequest", "RelayState"]
        return False
    [signing] = [k for k in descriptor.findall(f"{{{MD}}}KeyDescriptor")
                 if k.get("use") == "signing"]
    der = base64.b64decode("".join(signing.findtext(f".//{{{DS}}}X509Certificate").split()))
    public_key = x509.load_der_x509_certificate(der).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    signed, _, signature = query.rpartition("&Signature=")
    assert [part.split("=", 1)[0] for part in signed.split("&")] == [
        "SAMLRequest", "RelayState", "SigAlg"]
    assert parse_qs(query)["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    public_key.verify(base64.b64decode(unquote(signature)), signed.encode(),
                      padding.PKCS1v15(), hashes.SHA256())  # raises if it does not verify
    return True


@pytest.mark.parametrize("idp_wants_signed_requests", [None, "false", "true"])
def test_every_authn_request_is_signed_as_the_sp_metadata_promises(
        ctx: ServiceContext, idp_wants_signed_requests: str | None) -> None:
    """Whatever the IdP metadata says about WantAuthnRequestsSigned (nothing, false, true),
    the SP metadata says AuthnRequestsSigned="true" and the redirect carries SigAlg and a
    Signature over the exact query string that verifies with the SP metadata's certificate."""
    admin.create_tenant(ctx, "clinic")
    conn = admin.add_saml_connection(ctx, tenant="clinic", slug="plain",
                                     metadata_xml=idp_metadata(idp_wants_signed_requests),
                                     metadata_url=None, mapping=None, mapping_source=None)
    assert conn.config["want_authn_requests_signed"] is (idp_wants_signed_requests == "true")
    assert authn_requests_signed(make_client(ctx, dev_mode=False), "plain")


@pytest.mark.parametrize("idp_wants_signed_requests", [None, "false", "true"])
def test_unsigned_authn_requests_unless_the_idp_asks(
        ctx: ServiceContext, idp_wants_signed_requests: str | None) -> None:
    """``sign_authn_requests: false`` through the admin API: the login start sends the
    AuthnRequest unsigned and the SP metadata says AuthnRequestsSigned="false", unless the
    IdP metadata says WantAuthnRequestsSigned="true", which still gets signed requests (and
    the metadata says so). The unsigned start signs in like a signed one."""
    admin.create_tenant(ctx, "clinic")
    _, token = admin.create_admin_token(ctx, "ops")
    client = make_client(ctx, dev_mode=False)
    r = client.post("/api/connections/saml", headers={"authorization": f"Bearer {token}"},
                    json={"tenant": "clinic", "slug": "lean", "sign_authn_requests": False,
                          "idp_metadata_xml": idp_metadata(idp_wants_signed_requests).decode()})
    assert r.status_code == 201, r.text
    idp_asks = idp_wants_signed_requests == "true"
    assert r.json()["authn_requests_signed"] is idp_asks
    assert admin.get_connection(ctx, "lean").config["sign_authn_requests"] is False
    assert authn_requests_signed(client, "lean") is idp_asks

    idp = FakeSamlIdp()  # the metadata above is this class's: the same signing key
    r = client.get("/sso/lean/login", params={"return_to": "/me"})
    relay_state = parse_qs(urlsplit(r.headers["location"]).query)["RelayState"][0]
    r = client.post("/sso/lean/saml/acs", data={
        "SAMLResponse": idp.response(
            acs_url=f"{BASE_URL}/sso/lean/saml/acs", audience=f"{BASE_URL}/sso/lean/saml/metadata",
            subject="ada", attributes=ada(), in_response_to=request_id_of(r.headers["location"]),
            now=ctx.clock()),
        "RelayState": relay_state})
    assert r.status_code == 303, r.text
    assert client.get("/me").status_code == 200


def test_sp_metadata_is_served_as_saml_metadata(browser: TestClient) -> None:
    r = browser.get("/sso/idp/saml/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/samlmetadata+xml")
    assert f'entityID="{AUDIENCE}"' in r.text and ACS in r.text


def test_same_site_post_with_the_cookie_signs_in(ctx: ServiceContext, idp: FakeSamlIdp,
                                                browser: TestClient) -> None:
    relay_state, request_id = start(browser, "/me")
    r = browser.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id),
                                     "RelayState": relay_state})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/me"
    assert_acs_headers(r)
    me = browser.get("/me")
    assert me.status_code == 200
    assert me.json()["email"] == "ada@hospital.example"
    assert me.json()["roles"] == ["nurse", "staff"]


def test_a_pinned_certificate_past_its_dates_still_verifies(ctx: ServiceContext) -> None:
    """A pin trusts the certificate's key, not its dates: IdPs (ADFS's self-signed token
    signing certificate) sign on with a certificate past its end date."""
    idp = FakeSamlIdp()
    key = serialization.load_pem_private_key(idp.key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired IdP certificate")])
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
               .not_valid_after(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
               .sign(key, hashes.SHA256()))
    idp.cert_pem = expired.public_bytes(serialization.Encoding.PEM).decode()
    add_connection(ctx, idp=idp)
    browser = make_client(ctx, dev_mode=False)
    relay_state, request_id = start(browser, "/me")
    r = browser.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id),
                                     "RelayState": relay_state})
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["email"] == "ada@hospital.example"


def test_cross_site_post_without_the_cookie_bounces_through_our_origin(
        ctx: ServiceContext, idp: FakeSamlIdp, browser: TestClient) -> None:
    relay_state, request_id = start(browser, "/me")
    form = {"SAMLResponse": response(ctx, idp, request_id), "RelayState": relay_state}

    bounce = cross_site(browser).post(ACS_PATH, data=form)

    assert bounce.status_code == 200
    assert_acs_headers(bounce)
    assert "script-src 'self'" in bounce.headers["content-security-policy"]
    assert '<script src="/static/saml-bounce.js"></script>' in bounce.text
    assert not re.search(r"<script>", bounce.text)  # no inline script: our CSP forbids it
    assert "<noscript>" in bounce.text
    fields = hidden_fields(bounce.text)
    assert fields == {**form, "jitprov_bounce": "1"}
    assert re.search(rf'<form id="saml-bounce" method="post" action="{ACS_PATH}"', bounce.text)
    assert counts(ctx) == (0, 0)  # nothing validated, nothing spent on the cookie-less hop

    r = browser.post(ACS_PATH, data=fields)  # the same-site re-POST carries the cookie
    assert r.status_code == 303, r.text
    assert browser.get("/me").json()["email"] == "ada@hospital.example"


def test_on_https_the_binding_cookie_comes_with_the_idps_post_and_nothing_bounces(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    """On https the SAML binding cookie is ``SameSite=None; Secure``: browsers send it with
    the IdP's cross-site top-level POST, so the ACS completes the login at once. (The OIDC
    and demo cookies stay Lax: their answers are a GET redirect and a same-site POST.)"""
    browser = make_client(ctx, dev_mode=False)
    browser.base_url = "https://testserver"  # type: ignore[assignment]
    r = browser.get("/sso/idp/login", params={"return_to": "/me"})
    cookie = r.headers["set-cookie"].lower()
    assert "samesite=none" in cookie and "secure" in cookie and "httponly" in cookie
    location = r.headers["location"]
    relay_state = parse_qs(urlsplit(location).query)["RelayState"][0]
    form = {"SAMLResponse": response(ctx, idp, request_id_of(location)),
            "RelayState": relay_state}
    done = browser.post(ACS_PATH, data=form)  # no jitprov_bounce: the IdP's own POST
    assert done.status_code == 303, done.text
    assert_acs_headers(done)
    assert browser.get("/me").json()["email"] == "ada@hospital.example"


def test_on_https_the_session_held_at_the_start_ends_though_the_post_carries_none(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    """The IdP's cross-site POST carries the None binding cookie but not the Lax session
    cookie: the session the browser held when the login started is ended all the same (it
    travels, hashed, in the sealed login request)."""
    browser = make_client(ctx, dev_mode=False)
    browser.base_url = "https://testserver"  # type: ignore[assignment]

    def sign_in(client: TestClient) -> str:
        r = client.get("/sso/idp/login", params={"return_to": "/me"})
        location = r.headers["location"]
        form = {"SAMLResponse": response(ctx, idp, request_id_of(location)),
                "RelayState": parse_qs(urlsplit(location).query)["RelayState"][0]}
        name, value = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)
        idp_post = make_client(ctx, dev_mode=False)  # what the cross-site POST carries
        idp_post.base_url = "https://testserver"  # type: ignore[assignment]
        idp_post.cookies.set(name, value, path="/sso/")
        done = idp_post.post(ACS_PATH, data=form)
        assert done.status_code == 303, done.text
        return done.cookies["jitprov_session"]

    first = sign_in(browser)
    browser.cookies.set("jitprov_session", first)
    assert browser.get("/me").status_code == 200
    second = sign_in(browser)  # started with the first session's cookie
    assert second != first
    assert browser.get("/me").status_code == 401  # the first session ended
    browser.cookies.set("jitprov_session", second)
    assert browser.get("/me").status_code == 200


def test_a_cross_site_subresource_never_gets_a_samesite_none_cookie(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    """An <img> or fetch from another site that points at the login start must not plant a
    cookie the browser would then send everywhere under /sso/: it gets a Lax one, which
    browsers refuse to store from a cross-site subresource."""
    browser = make_client(ctx, dev_mode=False)
    browser.base_url = "https://testserver"  # type: ignore[assignment]
    r = browser.get("/sso/idp/login", headers={"sec-fetch-mode": "no-cors",
                                              "sec-fetch-dest": "image"})
    assert r.status_code == 303
    assert "samesite=lax" in r.headers["set-cookie"].lower()
    r = browser.get("/sso/idp/login", headers={"sec-fetch-mode": "navigate"})
    assert "samesite=none" in r.headers["set-cookie"].lower()


def test_a_connection_that_cannot_build_its_request_is_a_readable_page_audited_once(
        ctx: ServiceContext, idp: FakeSamlIdp, browser: TestClient) -> None:
    with ctx.db.engine.begin() as conn:  # the SP key is gone (a key no longer configured)
        conn.execute(sa.update(t.connection).where(t.connection.c.slug == "idp")
                     .values(secrets=ctx.secretbox.seal({})))
    ctx.connections.forget("idp")
    browser.get("/sso/idp/saml/metadata")  # the connection read again, and cached
    r = browser.get("/sso/idp/login", headers={"accept": "text/html"})
    assert r.status_code == 400
    assert "no SP key pair" in r.text and r.headers["x-request-id"] in r.text
    failed = [e for e in audit_export.iter_events(ctx, "hospital") if e.type == "login.failed"]
    assert [(e.data["code"], e.request_id) for e in failed] == [
        ("invalid_input", r.headers["x-request-id"])]


def test_the_bounce_happens_once_and_then_refuses(ctx: ServiceContext, idp: FakeSamlIdp,
                                                 browser: TestClient) -> None:
    relay_state, request_id = start(browser)
    form = {"SAMLResponse": response(ctx, idp, request_id), "RelayState": relay_state,
            "jitprov_bounce": "1"}
    r = cross_site(browser).post(ACS_PATH, data=form, headers={"accept": "text/html"})
    assert r.status_code == 400
    assert_acs_headers(r)
    assert "not started in this browser" in r.text
    assert r.headers["x-request-id"] in r.text
    assert last_event(ctx) == ("login.failed", "login_foreign", r.headers["x-request-id"])
    assert counts(ctx) == (0, 0)


def test_the_static_bounce_script_is_served(browser: TestClient) -> None:
    r = browser.get("/static/saml-bounce.js")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    assert 'getElementById("saml-bounce").submit()' in r.text


def test_a_replayed_form_is_refused_with_a_readable_page(ctx: ServiceContext,
                                                        idp: FakeSamlIdp,
                                                        browser: TestClient) -> None:
    relay_state, request_id = start(browser)
    form = {"SAMLResponse": response(ctx, idp, request_id), "RelayState": relay_state}
    assert browser.post(ACS_PATH, data=form).status_code == 303
    r = browser.post(ACS_PATH, data={**form, "jitprov_bounce": "1"})
    assert r.status_code == 400
    assert "request id" in r.text and r.headers["x-request-id"] in r.text
    assert last_event(ctx)[:2] == ("login.failed", "login_expired")
    assert counts(ctx) == (1, 1)


@pytest.mark.postgres
def test_on_postgresql_the_acs_spends_its_login_and_assertion_with_the_identitys_read(
        ctx: ServiceContext, idp: FakeSamlIdp, browser: TestClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What decides whether this POST may sign in (the login request spent, the assertion ID
    recorded: single use on every node) goes in the round trip of the login lock and the
    identity's read; then the writes with the COMMIT. A replay is still refused."""
    if ctx.db.dialect != "postgresql":
        pytest.skip("SQLite: no round trips, each statement runs at once")
    sent = spy_pipelines(ctx, monkeypatch)
    relay_state, request_id = start(browser)
    r = browser.post(ACS_PATH, data={
        "SAMLResponse": response(ctx, idp, request_id, assertion_id="_once"),
        "RelayState": relay_state})
    assert r.status_code == 303, r.text
    assert sent[0] == (["login_request", "saml_replay", "lock", "find"], False), sent
    assert [commit for _, commit in sent] == [False, True], sent
    # the same assertion ID in a new login: its spend goes through, the replay is refused
    relay_state, request_id = start(browser)
    r = browser.post(ACS_PATH, data={
        "SAMLResponse": response(ctx, idp, request_id, assertion_id="_once"),
        "RelayState": relay_state})
    assert r.status_code == 400, r.text
    assert last_event(ctx)[:2] == ("login.failed", "replay")
    assert counts(ctx) == (1, 1)


def test_a_garbage_response_is_a_readable_error_not_a_500(ctx: ServiceContext,
                                                          browser: TestClient) -> None:
    relay_state, _ = start(browser)
    r = browser.post(ACS_PATH, data={"SAMLResponse": "bm90IHhtbA==",
                                     "RelayState": relay_state})
    assert r.status_code == 400
    assert_acs_headers(r)
    assert "request id" in r.text and r.headers["x-request-id"] in r.text
    assert last_event(ctx)[0] == "login.failed"
    assert counts(ctx) == (0, 0)


def test_idp_initiated_is_refused_by_default(ctx: ServiceContext, idp: FakeSamlIdp,
                                            browser: TestClient) -> None:
    r = cross_site(browser).post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, None)})
    assert r.status_code in (400, 403)
    assert last_event(ctx)[:2] == ("login.failed", "unsolicited_response")
    assert counts(ctx) == (0, 0)


def test_idp_initiated_signs_in_when_enabled(ctx: ServiceContext) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    client = make_client(ctx, dev_mode=False)
    r = client.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, None),
                                    "RelayState": "/me"})
    assert r.status_code == 303 and r.headers["location"] == "/me"
    assert client.get("/me").json()["email"] == "ada@hospital.example"


def test_an_off_site_relay_state_is_refused(ctx: ServiceContext) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    client = make_client(ctx, dev_mode=False)
    r = client.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, None),
                                    "RelayState": "https://evil.example/phish"})
    assert r.status_code in (400, 403)
    assert "evil.example" not in r.headers.get("location", "")
    assert last_event(ctx)[:2] == ("login.failed", "relay_state_refused")
    assert counts(ctx) == (0, 0)


def test_an_oversized_body_is_refused_before_parsing(ctx: ServiceContext,
                                                     browser: TestClient) -> None:
    relay_state, _ = start(browser)
    r = browser.post(ACS_PATH, data={"SAMLResponse": "A" * 600_000, "RelayState": relay_state},
                     headers={"accept": "text/html"})
    assert r.status_code == 413
    assert_acs_headers(r)
    assert "larger than" in r.text and r.headers["x-request-id"] in r.text
    assert last_event(ctx) == ("login.failed", "too_large", r.headers["x-request-id"])
    assert counts(ctx) == (0, 0)


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b'{"SAMLResponse": "PHNhbWxwOlJlc3BvbnNlLz4="}'),
    ("multipart/form-data; boundary=x", b"--x\r\n"),
    ("application/x-www-form-urlencoded", "SAMLResponse=\u00e9t\u00e9".encode()),
])
def test_a_post_that_is_not_a_form_is_refused_and_audited(ctx: ServiceContext,
                                                          browser: TestClient,
                                                          content_type: str,
                                                          body: bytes) -> None:
    r = browser.post(ACS_PATH, content=body,
                     headers={"content-type": content_type, "accept": "text/html"})
    assert r.status_code == 400
    assert_acs_headers(r)
    assert "not a" in r.text and r.headers["x-request-id"] in r.text
    assert last_event(ctx) == ("login.failed", "not_a_form", r.headers["x-request-id"])
    assert counts(ctx) == (0, 0)


@pytest.mark.parametrize("signed", ["response", "both"])
def test_a_response_signed_as_a_whole_signs_in_by_default(ctx: ServiceContext,
                                                          idp: FakeSamlIdp,
                                                          browser: TestClient,
                                                          signed: str) -> None:
    relay_state, request_id = start(browser, "/me")
    r = browser.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id,
                                                              signed=signed),
                                     "RelayState": relay_state})
    assert (r.status_code, r.headers.get("location")) == (303, "/me"), r.text
    assert browser.get("/me").json()["email"] == "ada@hospital.example"


def test_require_signed_assertion_refuses_a_response_only_signature(
        ctx: ServiceContext) -> None:
    idp = add_connection(ctx, require_signed_assertion=True)
    client = make_client(ctx, dev_mode=False)
    assert b'WantAssertionsSigned="true"' in client.get("/sso/idp/saml/metadata").content
    relay_state, request_id = start(client)
    r = client.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id,
                                                             signed="response"),
                                    "RelayState": relay_state},
                    headers={"accept": "text/html"})
    assert r.status_code == 400
    assert_acs_headers(r)
    assert "requires a signed Assertion" in r.text and r.headers["x-request-id"] in r.text
    assert last_event(ctx) == ("login.failed", "signature_missing", r.headers["x-request-id"])
    assert counts(ctx) == (0, 0)
    # the same connection signs in with an IdP that signs both
    relay_state, request_id = start(client)
    r = client.post(ACS_PATH, data={"SAMLResponse": response(ctx, idp, request_id,
                                                             signed="both"),
                                    "RelayState": relay_state})
    assert r.status_code == 303, r.text


def test_admin_api_sets_require_signed_assertion(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    _, token = admin.create_admin_token(ctx, "ops")
    client = make_client(ctx, dev_mode=False)
    auth = {"authorization": f"Bearer {token}"}
    metadata = FakeSamlIdp().metadata().decode()
    for slug, body, expected in (
            ("strict", {"require_signed_assertion": True}, True),
            ("lenient", {}, False),
            ("by-options", {"options": {"require_signed_assertion": True}}, True)):
        r = client.post("/api/connections/saml", headers=auth, json={
            "tenant": "hospital", "slug": slug, "idp_metadata_xml": metadata, **body})
        assert r.status_code == 201, r.text
        assert r.json()["require_signed_assertion"] is expected
        assert admin.get_connection(ctx, slug).config["require_signed_assertion"] is expected
    r = client.post("/api/connections/saml", headers=auth, json={
        "tenant": "hospital", "slug": "typo", "idp_metadata_xml": metadata,
        "require_signed_assertion": "sometimes"})
    assert r.status_code == 422


def test_admin_api_registers_a_saml_connection(ctx: ServiceContext) -> None:
    admin.create_tenant(ctx, "hospital")
    _, token = admin.create_admin_token(ctx, "ops")
    client = make_client(ctx, dev_mode=False)
    r = client.post("/api/connections/saml", headers={"authorization": f"Bearer {token}"},
                    json={"tenant": "hospital", "slug": "adfs",
                          "idp_metadata_xml": FakeSamlIdp().metadata().decode()})
    assert r.status_code == 201, r.text
    assert r.json()["acs_url"] == f"{BASE_URL}/sso/adfs/saml/acs"
    assert r.json()["sp_entity_id"] == f"{BASE_URL}/sso/adfs/saml/metadata"
    assert client.get("/sso/adfs/saml/metadata").status_code == 200


def test_admin_api_refuses_an_idp_certificate_restricted_to_rsa_pss(
        ctx: ServiceContext) -> None:
    """Its key alone would verify RSA PKCS#1 v1.5 signatures, which the certificate forbids:
    refused when the connection is added, with the reason."""
    admin.create_tenant(ctx, "hospital")
    _, token = admin.create_admin_token(ctx, "ops")
    idp = FakeSamlIdp()
    idp.cert_pem = (VECTORS / "keys" / "idp-pss.crt").read_text()
    client = make_client(ctx, dev_mode=False)
    r = client.post("/api/connections/saml", headers={"authorization": f"Bearer {token}"},
                    json={"tenant": "hospital", "slug": "adfs",
                          "idp_metadata_xml": idp.metadata().decode()})
    assert r.status_code == 400, r.text
    assert "RSA-PSS signatures only" in r.text
    assert client.get("/sso/adfs/saml/metadata").status_code == 404
