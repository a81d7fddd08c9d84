"""SAML Single Logout over HTTP, against the in-process test IdP (which signs like a real one):
the SP metadata's SingleLogoutService, SP-initiated logout from ``POST /logout`` (a signed
LogoutRequest by HTTP-Redirect, the IdP's LogoutResponse answered), IdP-initiated logout by
HTTP-Redirect and HTTP-POST (the sessions of that SessionIndex or NameID end at the next
request, a signed LogoutResponse goes back), and the messages that must be refused."""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import sqlalchemy as sa
import xmlsec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from lxml import etree
from starlette.testclient import TestClient

from jitprov.protocols.saml.authn_request import sign_query
from jitprov.protocols.saml.keys import certificate_key
from jitprov.services import audit_export
from jitprov.services.context import ServiceContext
from jitprov.store import tables as t
from jitprov.testing.saml_idp import (
    BASE_URL,
    SLO_URL,
    FakeSamlIdp,
    ada,
    add_connection,
    request_id_of,
)
from jitprov.web.routes.common import SESSION_COOKIE
from tests.web.helpers import hidden_fields, make_client

ACS = f"{BASE_URL}/sso/idp/saml/acs"
SLO = f"{BASE_URL}/sso/idp/saml/slo"
SP_ENTITY = f"{BASE_URL}/sso/idp/saml/metadata"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


@pytest.fixture
def idp(ctx: ServiceContext) -> FakeSamlIdp:
    return add_connection(ctx, idp=FakeSamlIdp(slo_url=SLO_URL))


@pytest.fixture
def app(ctx: ServiceContext, idp: FakeSamlIdp) -> TestClient:
    return make_client(ctx, dev_mode=False)


def sign_in(ctx: ServiceContext, idp: FakeSamlIdp, subject: str, session_index: str) -> str:
    """A session of ``subject`` from an SP-initiated login at the IdP session
    ``session_index``; returns the session cookie value."""
    client = make_client(ctx, dev_mode=False)
    r = client.get("/sso/idp/login", params={"return_to": "/me"})
    relay_state = parse_qs(urlsplit(r.headers["location"]).query)["RelayState"][0]
    response = idp.response(acs_url=ACS, audience=SP_ENTITY, subject=subject,
                            attributes=ada(mail=[f"{subject}@hospital.example"]),
                            in_response_to=request_id_of(r.headers["location"]),
                            now=ctx.clock(), session_index=session_index)
    r = client.post("/sso/idp/saml/acs", data={"SAMLResponse": response,
                                               "RelayState": relay_state})
    assert r.status_code == 303, r.text
    return str(client.cookies[SESSION_COOKIE])


def verify(app: TestClient, token: str) -> int:
    app.cookies.set(SESSION_COOKIE, token)
    try:
        return app.get("/auth/verify").status_code
    finally:
        app.cookies.clear()


def events(ctx: ServiceContext, kind: str) -> list[dict[str, object]]:
    return [dict(e.data) for e in audit_export.iter_events(ctx, "hospital") if e.type == kind]


def outbox_types(ctx: ServiceContext) -> list[str]:
    with ctx.db.engine.connect() as conn:
        return [row.type for row in conn.execute(sa.select(t.outbox_event.c.type))]


def sp_certificate(app: TestClient) -> str:
    root = etree.fromstring(app.get("/sso/idp/saml/metadata").content)
    body = root.find(f".//{{{MD}}}KeyDescriptor[@use='signing']//"
                     "{http://www.w3.org/2000/09/xmldsig#}X509Certificate").text
    return f"-----BEGIN CERTIFICATE-----\n{body.strip()}\n-----END CERTIFICATE-----\n"


def redirect_message(app: TestClient, url: str, parameter: str) -> etree._Element:
    """The message of a signed HTTP-Redirect URL from the SP, its query signature verified
    with the SP certificate of its metadata."""
    query = urlsplit(url).query
    parts = dict(part.split("=", 1) for part in query.split("&"))
    signed = f"{parameter}={parts[parameter]}"
    if "RelayState" in parts:
        signed += f"&RelayState={parts['RelayState']}"
    signed += f"&SigAlg={parts['SigAlg']}"
    assert unquote(parts["SigAlg"]) == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    ctx = xmlsec.SignatureContext()
    ctx.key = certificate_key(sp_certificate(app))[0]
    ctx.verify_binary(signed.encode(), xmlsec.constants.TransformRsaSha256,
                      base64.b64decode(unquote(parts["Signature"])))
    return etree.fromstring(zlib.decompress(base64.b64decode(unquote(parts[parameter])), -15))


def status_of(message: etree._Element) -> str:
    return str(message.find(f"{{{SAMLP}}}Status/{{{SAMLP}}}StatusCode").get("Value"))


def other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


# -- SP metadata and the login side ----------------------------------------------------------

def test_the_sp_metadata_lists_the_single_logout_service_in_both_bindings(
        app: TestClient) -> None:
    root = etree.fromstring(app.get("/sso/idp/saml/metadata").content)
    services = root.findall(f".//{{{MD}}}SingleLogoutService")
    assert [(s.get("Binding").rsplit(":", 1)[1], s.get("Location")) for s in services] == [
        ("HTTP-Redirect", SLO), ("HTTP-POST", SLO)]
    descriptor = root.find(f"{{{MD}}}SPSSODescriptor")
    order = [etree.QName(child).localname for child in descriptor]
    assert order.index("SingleLogoutService") < order.index("NameIDFormat")


def test_a_saml_session_keeps_the_session_index_and_the_name_id(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    sign_in(ctx, idp, "ada", "idx-1")
    with ctx.db.engine.connect() as conn:
        row = conn.execute(sa.select(t.session.c.subject, t.session.c.idp_session_id,
                                     t.session.c.id_token_sealed)).one()
    assert (row.subject, row.idp_session_id) == ("ada", "idx-1")
    assert ctx.secretbox.open(row.id_token_sealed)["saml_name_id_format"] == PERSISTENT


# -- SP-initiated ------------------------------------------------------------------------------

def test_sign_out_sends_a_signed_logout_request_and_the_idps_answer_ends_on_the_signed_out_page(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    token = sign_in(ctx, idp, "ada", "idx-1")
    app.cookies.set(SESSION_COOKIE, token)

    r = app.post("/logout", headers={"Origin": BASE_URL})

    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(f"{SLO_URL}?SAMLRequest=")
    request = redirect_message(app, location, "SAMLRequest")
    assert request.tag == f"{{{SAMLP}}}LogoutRequest"
    assert request.get("Destination") == SLO_URL
    assert request.find(f"{{{SAML}}}Issuer").text == SP_ENTITY
    name_id = request.find(f"{{{SAML}}}NameID")
    assert (name_id.text, name_id.get("Format")) == ("ada", PERSISTENT)
    assert request.find(f"{{{SAMLP}}}SessionIndex").text == "idx-1"
    assert verify(app, token) == 401  # ended before the browser left

    answer = idp.logout_message("LogoutResponse", destination=SLO, now=ctx.clock(),
                                in_response_to=request.get("ID"))
    done = app.get(f"/sso/idp/saml/slo?{answer}")
    assert done.status_code == 200
    assert "You are signed out" in done.text and "did not confirm" not in done.text
    # the same answer again: the request it answered is spent
    again = app.get(f"/sso/idp/saml/slo?{answer}")
    assert again.status_code == 400
    assert [e["code"] for e in events(ctx, "logout.refused")] == ["in_response_to_mismatch"]


def test_a_logout_response_that_is_not_success_says_so(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    app.cookies.set(SESSION_COOKIE, sign_in(ctx, idp, "ada", "idx-1"))
    request = redirect_message(app, app.post("/logout").headers["location"], "SAMLRequest")
    answer = idp.logout_message("LogoutResponse", destination=SLO, now=ctx.clock(),
                                in_response_to=request.get("ID"),
                                status="urn:oasis:names:tc:SAML:2.0:status:PartialLogout")
    done = app.get(f"/sso/idp/saml/slo?{answer}")
    assert done.status_code == 200
    assert "did not confirm" in done.text


def test_a_logout_response_to_no_request_of_ours_is_refused(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    answer = idp.logout_message("LogoutResponse", destination=SLO, now=ctx.clock(),
                                in_response_to="_never-sent")
    r = app.get(f"/sso/idp/saml/slo?{answer}")
    assert r.status_code == 400
    assert [e["code"] for e in events(ctx, "logout.refused")] == ["in_response_to_mismatch"]


def test_without_an_idp_slo_endpoint_sign_out_stays_local(ctx: ServiceContext) -> None:
    plain = add_connection(ctx, slug="idp")  # its metadata has no SingleLogoutService
    app = make_client(ctx, dev_mode=False)
    token = sign_in(ctx, plain, "ada", "idx-1")
    app.cookies.set(SESSION_COOKIE, token)
    r = app.post("/logout", headers={"Origin": BASE_URL})
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert verify(app, token) == 401
    root = etree.fromstring(app.get("/sso/idp/saml/metadata").content)
    assert root.findall(f".//{{{MD}}}SingleLogoutService")  # the SP still offers it


# -- IdP-initiated -----------------------------------------------------------------------------

def test_an_idp_logout_request_by_redirect_ends_that_session_only(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    ada_token = sign_in(ctx, idp, "ada", "idx-ada")
    ada_other = sign_in(ctx, idp, "ada", "idx-ada-2")  # another IdP session of hers
    bob_token = sign_in(ctx, idp, "bob", "idx-bob")
    query = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                               name_id="ada", session_indexes=("idx-ada",),
                               message_id="_req1", relay_state="rs-1")

    r = app.get(f"/sso/idp/saml/slo?{query}")

    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(f"{SLO_URL}?SAMLResponse=")
    assert parse_qs(urlsplit(location).query)["RelayState"] == ["rs-1"]
    response = redirect_message(app, location, "SAMLResponse")
    assert (response.get("InResponseTo"), response.get("Destination")) == ("_req1", SLO_URL)
    assert status_of(response) == SUCCESS
    assert [verify(app, s) for s in (ada_token, ada_other, bob_token)] == [401, 200, 200]
    assert events(ctx, "session.revoked") == [
        {"connection": "idp", "reason": "saml_single_logout", "sessions": 1}]
    assert outbox_types(ctx).count("session.revoked") == 1


def test_an_idp_logout_request_by_post_ends_the_session_and_posts_a_signed_answer(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    ada_token = sign_in(ctx, idp, "ada", "idx-ada")
    bob_token = sign_in(ctx, idp, "bob", "idx-bob")
    value = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                               binding="post", name_id="ada", session_indexes=("idx-ada",),
                               message_id="_req2")

    r = app.post("/sso/idp/saml/slo", data={"SAMLRequest": value, "RelayState": "rs-2"})

    assert r.status_code == 200
    assert f'action="{SLO_URL}"' in r.text
    assert "form-action https://idp.test.example" in r.headers["content-security-policy"]
    fields = hidden_fields(r.text)
    assert fields["RelayState"] == "rs-2"
    response = etree.fromstring(base64.b64decode(fields["SAMLResponse"]))
    assert (response.get("InResponseTo"), status_of(response)) == ("_req2", SUCCESS)
    signature = response.find("{http://www.w3.org/2000/09/xmldsig#}Signature")
    xmlsec.tree.add_ids(response, ["ID"])
    check = xmlsec.SignatureContext()
    check.key = certificate_key(sp_certificate(app))[0]
    check.verify(signature)
    assert [verify(app, s) for s in (ada_token, bob_token)] == [401, 200]


def test_a_logout_request_without_session_index_ends_every_session_of_the_name_id(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    tokens = [sign_in(ctx, idp, "ada", "idx-1"), sign_in(ctx, idp, "ada", "idx-2"),
              sign_in(ctx, idp, "bob", "idx-3")]
    query = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                               name_id="ada")
    r = app.get(f"/sso/idp/saml/slo?{query}")
    assert status_of(redirect_message(app, r.headers["location"], "SAMLResponse")) == SUCCESS
    assert [verify(app, s) for s in tokens] == [401, 401, 200]
    assert [e["sessions"] for e in events(ctx, "session.revoked")] == [2]


def test_a_logout_request_for_no_known_session_still_answers_success(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    token = sign_in(ctx, idp, "ada", "idx-1")
    query = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                               name_id="ada", session_indexes=("idx-unknown",))
    r = app.get(f"/sso/idp/saml/slo?{query}")
    assert status_of(redirect_message(app, r.headers["location"], "SAMLResponse")) == SUCCESS
    assert verify(app, token) == 200
    assert events(ctx, "session.revoked") == []


def test_a_replayed_logout_request_is_answered_requester_and_revokes_nothing_more(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    sign_in(ctx, idp, "ada", "idx-1")
    query = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                               name_id="ada", session_indexes=("idx-1",))
    assert app.get(f"/sso/idp/saml/slo?{query}").status_code == 303
    token = sign_in(ctx, idp, "ada", "idx-1")  # she signs in again at the same IdP session

    r = app.get(f"/sso/idp/saml/slo?{query}")

    assert status_of(redirect_message(app, r.headers["location"], "SAMLResponse")) == REQUESTER
    assert verify(app, token) == 200
    assert [e["code"] for e in events(ctx, "logout.refused")] == ["message_replayed"]


@pytest.mark.parametrize(("change", "code"), [
    ({"destination": f"{BASE_URL}/sso/other/saml/slo"}, "destination_mismatch"),
    ({"destination": None}, "destination_mismatch"),
    ({"issuer": "https://evil.example/idp"}, "issuer_mismatch"),
    ({"stale": True}, "expired"),
])
def test_a_verified_but_wrong_logout_request_is_answered_requester(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient, change: dict[str, Any],
        code: str) -> None:
    token = sign_in(ctx, idp, "ada", "idx-1")
    change = dict(change)  # the parameter is shared by the SQLite and PostgreSQL runs
    now = ctx.clock() - dt.timedelta(minutes=30) if change.pop("stale", False) else ctx.clock()
    options: dict[str, Any] = {"destination": SLO, **change}
    query = idp.logout_message("LogoutRequest", now=now, name_id="ada",
                               session_indexes=("idx-1",), **options)
    r = app.get(f"/sso/idp/saml/slo?{query}")
    assert r.status_code == 303
    response = redirect_message(app, r.headers["location"], "SAMLResponse")
    assert status_of(response) == REQUESTER
    assert verify(app, token) == 200
    assert [e["code"] for e in events(ctx, "logout.refused")] == [code]


@pytest.mark.parametrize(("binding", "forgery", "code"), [
    ("redirect", "unsigned", "signature_missing"),
    ("redirect", "other-key", "signature_invalid"),
    ("redirect", "tampered", "signature_invalid"),
    ("post", "unsigned", "signature_missing"),
    ("post", "other-key", "signature_invalid"),
    ("post", "doctype", "xml_forbidden"),
    ("post", "garbage", "invalid_response"),
])
def test_an_unverifiable_logout_request_gets_a_page_is_audited_and_revokes_nothing(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient,
        binding: Literal["redirect", "post"], forgery: str, code: str) -> None:
    token = sign_in(ctx, idp, "ada", "idx-1")
    options: dict[str, Any] = {"signed": forgery != "unsigned"}
    if forgery == "other-key":
        options["key_pem"] = other_key()
    message = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                                 binding=binding, name_id="ada",
                                 session_indexes=("idx-1",), **options)
    if binding == "redirect":
        if forgery == "tampered":  # another SessionIndex under the original signature
            bob = idp.logout_message("LogoutRequest", destination=SLO, now=ctx.clock(),
                                     name_id="bob", session_indexes=("idx-1",), signed=False)
            message = bob + "&" + message.split("&", 1)[1]
        r = app.get(f"/sso/idp/saml/slo?{message}")
    else:
        if forgery == "doctype":
            message = base64.b64encode(b'<!DOCTYPE x [<!ENTITY a "b">]>'
                                       + base64.b64decode(message)).decode()
        elif forgery == "garbage":
            message = base64.b64encode(b"<not-closed").decode()
        r = app.post("/sso/idp/saml/slo", data={"SAMLRequest": message})
    assert r.status_code == 400
    assert "SAMLResponse" not in r.text
    assert verify(app, token) == 200
    assert [e["code"] for e in events(ctx, "logout.refused")] == [code]
    assert events(ctx, "session.revoked") == []


@pytest.mark.parametrize("request_kwargs", [
    {"content": b'{"SAMLRequest": "x"}', "headers": {"Content-Type": "application/json"}},
    {"content": b"a=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    {"content": b"SAMLRequest=" + b"A" * 600_000,
     "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
])
def test_a_malformed_slo_post_is_a_readable_400(
        app: TestClient, request_kwargs: dict[str, Any]) -> None:
    r = app.post("/sso/idp/saml/slo", **request_kwargs)
    assert r.status_code == 400
    assert "text/html" in r.headers["content-type"]


def test_an_unknown_connection_is_a_404(app: TestClient) -> None:
    assert app.get("/sso/nope/saml/slo?SAMLRequest=x").status_code == 404


def test_a_signed_deflate_bomb_is_refused_before_it_is_inflated_in_full(
        ctx: ServiceContext, idp: FakeSamlIdp, app: TestClient) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"<a>" + b" " * (20 * 1024 * 1024)) + compressor.flush()
    query = sign_query("SAMLRequest=" + quote(base64.b64encode(bomb).decode(), safe=""),
                       idp.key_pem)
    r = app.get(f"/sso/idp/saml/slo?{query}")
    assert r.status_code == 400
    assert [e["code"] for e in events(ctx, "logout.refused")] == ["too_large"]
