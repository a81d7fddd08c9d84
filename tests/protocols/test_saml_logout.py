"""Single Logout messages (protocols/saml/logout.py): the IdP's SingleLogoutService read from
metadata, our LogoutRequest and LogoutResponse as the other side reads them, and what an
incoming message must be before anything of it is read."""

from __future__ import annotations

import base64
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from jitprov.protocols.saml import (
    SamlConfig,
    SamlError,
    SpSettings,
    parse_idp_metadata,
    sp_settings,
)
from jitprov.protocols.saml.logout import (
    LogoutNameId,
    build_logout_request,
    build_logout_response,
    check_logout_request,
    read_post_message,
    read_redirect_message,
)
from jitprov.protocols.saml.parsing import BINDING_POST, BINDING_REDIRECT

KEYS = Path(__file__).resolve().parents[1] / "vectors" / "saml" / "keys"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
SP = sp_settings("https://sso.example.test", "idp", certificate=(KEYS / "sp.crt").read_text(),
                 private_key_pem=(KEYS / "sp.key").read_text())
IDP_SLO = "https://idp.example.test/slo"


def peer_config(cert: str = "sp.crt", entity_id: str = SP.entity_id) -> SamlConfig:
    """A configuration that trusts our SP key: it reads our messages as the IdP would
    (every check is symmetric), with ``entity_id`` as the expected Issuer."""
    return SamlConfig.parse({"idp_entity_id": entity_id, "idp_sso_url": IDP_SLO,
                             "idp_certs": [(KEYS / cert).read_text()],
                             "want_authn_requests_signed": False})


def metadata(services: str) -> bytes:
    body = "".join(line for line in (KEYS / "idp.crt").read_text().splitlines()
                   if not line.startswith("-----"))
    return (f'<md:EntityDescriptor xmlns:md="{MD}" '
            'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.test">'
            f'<md:IDPSSODescriptor protocolSupportEnumeration="{SAMLP}">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{body}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f"{services}"
            f'<md:SingleSignOnService Binding="{BINDING_REDIRECT}" '
            'Location="https://idp.example.test/sso"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>").encode()


def test_the_idps_single_logout_services_are_read_per_binding() -> None:
    md = parse_idp_metadata(metadata(
        f'<md:SingleLogoutService Binding="{BINDING_REDIRECT}" Location="{IDP_SLO}" '
        'ResponseLocation="https://idp.example.test/slo/done"/>'
        f'<md:SingleLogoutService Binding="{BINDING_POST}" Location="{IDP_SLO}/post"/>'))
    assert md.slo_fields() == {
        "idp_slo_url": IDP_SLO, "idp_slo_response_url": "https://idp.example.test/slo/done",
        "idp_slo_post_url": f"{IDP_SLO}/post", "idp_slo_post_response_url": f"{IDP_SLO}/post"}
    assert parse_idp_metadata(metadata("")).slo_fields() == dict.fromkeys(md.slo_fields())


def test_an_slo_url_in_the_config_must_be_https() -> None:
    with pytest.raises(Exception, match="idp_slo_url: must be an https URL"):
        SamlConfig.parse({**peer_config().as_dict(), "idp_slo_url": "http://idp.example/slo"})


def test_our_logout_request_reads_back_with_the_name_id_exactly_as_received() -> None:
    name_id = LogoutNameId("ana-1", PERSISTENT, "https://idp.example.test", SP.entity_id)
    out = build_logout_request(SP, IDP_SLO, name_id, "idx-1", now=NOW, relay_state="rs")
    assert out.binding == BINDING_REDIRECT and out.url.startswith(f"{IDP_SLO}?SAMLRequest=")
    query = urlsplit(out.url).query
    assert list(parse_qs(query)) == ["SAMLRequest", "RelayState", "SigAlg", "Signature"]

    message = read_redirect_message(query, peer_config())
    assert message.relay_state == "rs" and message.id == out.id
    # read as the IdP reads it: our SLO URL stands in for the IdP's Destination
    idp_view = SpSettings(entity_id="https://idp.example.test", acs_url="", certificate="",
                          private_key_pem="", slo_url=IDP_SLO)
    request = check_logout_request(message, idp_view, peer_config(), now=NOW)
    assert request.name_id == name_id and request.session_indexes == ("idx-1",)
    assert request.replay_until == NOW + timedelta(minutes=7)  # NotOnOrAfter + the skew


def test_a_logout_response_by_post_carries_an_enveloped_signature_that_verifies() -> None:
    out = build_logout_response(SP, IDP_SLO, binding=BINDING_POST, in_response_to="_r1",
                                now=NOW, relay_state="rs")
    assert out.fields["RelayState"] == "rs"
    message = read_post_message("SAMLResponse", out.fields["SAMLResponse"], "rs",
                                peer_config())
    assert message.root.get("InResponseTo") == "_r1"
    with pytest.raises(SamlError) as refused:
        read_post_message("SAMLResponse", out.fields["SAMLResponse"], None,
                          peer_config("attacker.crt"))
    assert refused.value.code == "signature_invalid"


def test_an_ec_sp_key_signs_logout_messages_with_ecdsa() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sp")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    sp = sp_settings("https://sso.example.test", "idp", certificate=cert_pem,
                     private_key_pem=key_pem)
    config = SamlConfig.parse({**peer_config().as_dict(), "idp_certs": [cert_pem]})
    post = build_logout_response(sp, IDP_SLO, binding=BINDING_POST, in_response_to="_r",
                                 now=NOW)
    read_post_message("SAMLResponse", post.fields["SAMLResponse"], None, config)
    redirect = build_logout_response(sp, IDP_SLO, binding=BINDING_REDIRECT,
                                     in_response_to="_r", now=NOW)
    assert "ecdsa-sha256" in parse_qs(urlsplit(redirect.url).query)["SigAlg"][0]
    read_redirect_message(urlsplit(redirect.url).query, config)


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda q: q.split("&Signature=")[0], "signature_missing"),
    (lambda q: q.replace("SigAlg=", "SigAlg=x"), "algorithm_forbidden"),
    (lambda q: q + "&SAMLRequest=x", "invalid_response"),
    (lambda q: q.replace("rsa-sha256", "rsa-sha1"), "algorithm_forbidden"),
    (lambda q: q.replace("RelayState=rs", "RelayState=other"), "signature_invalid"),
    (lambda q: "", "invalid_response"),
])
def test_a_redirect_message_is_verified_before_it_is_read(mutate: object, code: str) -> None:
    out = build_logout_request(SP, IDP_SLO, LogoutNameId("ana"), None, now=NOW,
                               relay_state="rs")
    with pytest.raises(SamlError) as refused:
        read_redirect_message(mutate(urlsplit(out.url).query), peer_config())  # type: ignore[operator]
    assert refused.value.code == code


def test_a_post_message_with_two_elements_sharing_an_id_is_refused() -> None:
    out = build_logout_response(SP, IDP_SLO, binding=BINDING_POST, in_response_to="_r",
                                now=NOW)
    root = etree.fromstring(base64.b64decode(out.fields["SAMLResponse"]))
    etree.SubElement(root, f"{{{SAMLP}}}Extensions", ID=root.get("ID"))
    with pytest.raises(SamlError) as refused:
        read_post_message("SAMLResponse", base64.b64encode(etree.tostring(root)).decode(),
                          None, peer_config())
    assert refused.value.code == "signature_wrapping"


def test_a_request_is_not_read_as_a_response() -> None:
    out = build_logout_request(SP, IDP_SLO, LogoutNameId("ana"), None, now=NOW)
    query = urlsplit(out.url).query
    data = zlib.decompress(base64.b64decode(parse_qs(query)["SAMLRequest"][0]), -15)
    assert etree.fromstring(data).tag == f"{{{SAMLP}}}LogoutRequest"
    with pytest.raises(SamlError) as refused:
        read_post_message("SAMLResponse", base64.b64encode(data).decode(), None,
                          peer_config())
    assert refused.value.code == "invalid_response"
