"""The AuthnRequest over HTTP-Redirect (SAML Bindings 3.4), signed per 3.4.4.1."""

from __future__ import annotations

import base64
import dataclasses
import zlib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from jitprov.protocols.saml import SamlConfig, SamlError, build_authn_request, sp_settings
from jitprov.protocols.saml.authn_request import quote_base64

KEYS = Path(__file__).resolve().parents[1] / "vectors" / "saml" / "keys"
NOW = datetime(2026, 1, 15, 10, 0, 0, tzinfo=UTC)
SP = sp_settings("https://sp.example.test", "acme", certificate=(KEYS / "sp.crt").read_text(),
                 private_key_pem=(KEYS / "sp.key").read_text())
CONFIG = SamlConfig(idp_entity_id="https://idp.example.test/metadata",
                    idp_sso_url="https://idp.example.test/sso",
                    idp_certs=((KEYS / "idp.crt").read_text(),),
                    want_authn_requests_signed=True)
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"


def _decode(url: str) -> etree._Element:
    params = parse_qs(urlsplit(url).query)
    return etree.fromstring(zlib.decompress(base64.b64decode(params["SAMLRequest"][0]), -15))


def test_request_carries_what_the_idp_needs() -> None:
    request = build_authn_request(SP, CONFIG, relay_state="st-123", now=NOW)
    root = _decode(request.redirect_url)
    assert request.id == root.get("ID")
    assert request.id.startswith("_") and 33 == len(request.id)
    assert ("2.0", "2026-01-15T10:00:00Z", "https://idp.example.test/sso", SP.acs_url,
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST") == (
        root.get("Version"), root.get("IssueInstant"), root.get("Destination"),
        root.get("AssertionConsumerServiceURL"), root.get("ProtocolBinding"))
    issuer = root.find("{urn:oasis:names:tc:SAML:2.0:assertion}Issuer")
    assert SP.entity_id == issuer.text
    policy = root.find(f"{{{SAMLP}}}NameIDPolicy")
    assert ("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent", "true") == (
        policy.get("Format"), policy.get("AllowCreate"))
    assert ["st-123"] == parse_qs(urlsplit(request.redirect_url).query)["RelayState"]


def test_ids_are_fresh() -> None:
    ids = {build_authn_request(SP, CONFIG, relay_state="", now=NOW).id for _ in range(20)}
    assert 20 == len(ids)


def test_signature_covers_the_exact_query_string() -> None:
    url = build_authn_request(SP, CONFIG, relay_state="a b/c", now=NOW).redirect_url
    query = urlsplit(url).query
    signed, _, signature = query.rpartition("&Signature=")
    names = [part.split("=", 1)[0] for part in signed.split("&")]
    assert ["SAMLRequest", "RelayState", "SigAlg"] == names
    assert "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" == parse_qs(query)["SigAlg"][0]
    public = x509.load_pem_x509_certificate(SP.certificate.encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(base64.b64decode(unquote(signature)), signed.encode(), padding.PKCS1v15(),
                  hashes.SHA256())  # raises if the signature does not cover this exact string


def test_signed_even_when_the_idp_does_not_ask_for_signed_requests() -> None:
    # the SP metadata promises AuthnRequestsSigned="true": an IdP that trusts it (SimpleSAMLphp)
    # refuses an unsigned request, whatever its own metadata says
    config = dataclasses.replace(CONFIG, want_authn_requests_signed=False)
    query = parse_qs(urlsplit(build_authn_request(SP, config, relay_state="",
                                                  now=NOW).redirect_url).query)
    assert {"SAMLRequest", "SigAlg", "Signature"} == set(query)


def test_keeps_a_query_the_sso_url_already_has() -> None:
    config = dataclasses.replace(CONFIG, idp_sso_url="https://idp.example.test/sso?tenant=7")
    url = build_authn_request(SP, config, relay_state="", now=NOW).redirect_url
    assert url.startswith("https://idp.example.test/sso?tenant=7&SAMLRequest=")


def test_refuses_relay_state_over_80_bytes() -> None:
    with pytest.raises(SamlError):
        build_authn_request(SP, CONFIG, relay_state="x" * 81, now=NOW)


def test_an_ec_sp_key_signs_with_ecdsa_r_and_s() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sp = dataclasses.replace(SP, private_key_pem=pem)
    query = urlsplit(build_authn_request(sp, CONFIG, relay_state="", now=NOW).redirect_url).query
    signed, _, signature = query.rpartition("&Signature=")
    assert "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" == parse_qs(query)["SigAlg"][0]
    raw = base64.b64decode(unquote(signature))
    assert 64 == len(raw)  # XML-DSig 1.1: r || s, 32 bytes each on P-256
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, signed.encode(), ec.ECDSA(hashes.SHA256()))


@given(st.binary(max_size=600))
def test_quote_base64_is_quote_for_base64_text(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert quote_base64(text) == quote(text, safe="")


@given(st.text(max_size=80))
def test_quote_base64_of_other_text_is_quote(text: str) -> None:
    assert quote_base64(text) == quote(text, safe="")

