"""validate_response beyond the committed vectors: input limits, parsing, time and
SubjectConfirmation edge cases, key handling. Responses are built with the vector generator's
helpers (tests/vectors/saml/generate.py) and the committed test keys."""

from __future__ import annotations

import base64
import dataclasses
from datetime import timedelta
from typing import Any

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from jitprov.protocols.saml import SamlError, validate_response
from jitprov.protocols.saml import keys as saml_keys
from jitprov.protocols.saml.parsing import parse_instant, text_of
from jitprov.protocols.saml.signature import check_signature_shape
from tests.protocols.test_saml_vectors import VECTORS, the_config, the_sp
from tests.vectors.saml.generate import (
    ACS_URL,
    NOW,
    REQUEST_ID,
    SAML,
    assertion_of,
    build,
    descendant,
    encrypt_assertion,
    q,
    serialize,
    sign,
    signed_assertion,
)


def encode(root: etree._Element | bytes) -> str:
    data = root if isinstance(root, bytes) else serialize(root)
    return base64.b64encode(data).decode()


def validate(root: etree._Element | bytes | str, **kwargs: Any) -> Any:
    config = the_config(**kwargs.pop("config", {}))
    return validate_response(root if isinstance(root, str) else encode(root), sp=the_sp(),
                             config=config,
                             expected_in_response_to=kwargs.pop("in_response_to", REQUEST_ID),
                             now=kwargs.pop("now", NOW))


def code_of(root: etree._Element | bytes | str, **kwargs: Any) -> str:
    with pytest.raises(SamlError) as caught:
        validate(root, **kwargs)
    return caught.value.code


# -- input ------------------------------------------------------------------------------------

def test_refuses_an_oversized_field_before_decoding() -> None:
    assert "too_large" == code_of("A" * (2 * 256 * 1024 + 4))


def test_refuses_an_oversized_document_after_decoding() -> None:
    padded = serialize(signed_assertion()).replace(b"<saml:Issuer>",
                                                   b" " * 5000 + b"<saml:Issuer>", 1)
    assert "too_large" == code_of(padded, config={"max_response_bytes": 4096})


def test_accepts_base64_wrapped_in_lines() -> None:
    field = encode(signed_assertion())
    wrapped = "\r\n".join(field[i:i + 76] for i in range(0, len(field), 76))
    assert validate(wrapped).identity.subject


@pytest.mark.parametrize("field", ["not base64!", "QUJD=extra", "%3Csamlp"])
def test_refuses_what_is_not_base64(field: str) -> None:
    assert "invalid_response" == code_of(field)


@pytest.mark.parametrize("data", [b"<samlp:Response", b"not xml", b"\x00\x01"])
def test_refuses_what_is_not_xml(data: bytes) -> None:
    assert "invalid_response" == code_of(data)


def test_refuses_a_dtd_in_another_encoding() -> None:
    # the byte scan cannot see "<!DOCTYPE" in UTF-16; the parsed document's docinfo can
    xml = ('<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE samlp:Response [\n'
           '<!ENTITY x "y">]>\n' + serialize(signed_assertion()).decode().split("?>\n", 1)[1])
    assert "xml_forbidden" == code_of(xml.encode("utf-16"))


def test_refuses_an_internal_subset_without_entities() -> None:
    xml = b"<!DOCTYPE samlp:Response>\n" + serialize(signed_assertion()).split(b"?>\n", 1)[1]
    assert "xml_forbidden" == code_of(xml)


def test_refuses_what_is_not_a_response() -> None:
    assert "invalid_response" == code_of(
        b'<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>')


def test_refuses_saml_1_version() -> None:
    root = build()
    root.set("Version", "1.1")
    assert "invalid_response" == code_of(sign(assertion_of(root)).getroottree().getroot())


def test_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate(signed_assertion(), now=NOW.replace(tzinfo=None))


# -- status, time, confirmation ---------------------------------------------------------------

def test_an_idp_error_without_assertion_says_the_status() -> None:
    root = build(status="urn:oasis:names:tc:SAML:2.0:status:Requester")
    root.remove(assertion_of(root))
    with pytest.raises(SamlError) as caught:
        validate(root)
    assert "status_not_success" == caught.value.code
    assert "urn:oasis:names:tc:SAML:2.0:status:Requester" in str(caught.value)


def test_a_response_without_assertion_is_refused() -> None:
    root = build()
    root.remove(assertion_of(root))
    assert "invalid_response" == code_of(root)


@pytest.mark.parametrize(("shift", "expected"), [
    (timedelta(seconds=298 + 119), "ok"),        # NotOnOrAfter + skew - 1 s: still valid
    (timedelta(seconds=298 + 120), "expired"),   # NotOnOrAfter + skew: expired
    (timedelta(seconds=-32 - 120), "ok"),        # NotBefore - skew: valid
    (timedelta(seconds=-32 - 121), "not_yet_valid"),
])
def test_clock_skew_bounds(shift: timedelta, expected: str) -> None:
    root = signed_assertion()
    if expected == "ok":
        assert validate(root, now=NOW + shift).identity.subject
    else:
        assert expected == code_of(root, now=NOW + shift)


def test_zero_skew_is_exact() -> None:
    assert "expired" == code_of(signed_assertion(), now=NOW + timedelta(seconds=298),
                                config={"clock_skew_seconds": 0})


def test_subject_confirmation_expiry_is_checked_on_its_own() -> None:
    root = build()
    descendant(assertion_of(root), q(SAML, "SubjectConfirmationData")).set(
        "NotOnOrAfter", "2026-01-15T09:50:00Z")
    sign(assertion_of(root))
    assert "expired" == code_of(root)


def test_idp_session_end_is_checked() -> None:
    root = signed_assertion(session_end="2026-01-15T09:00:00Z")
    assert "expired" == code_of(root)


def test_dotnet_seven_digit_fractions_are_read() -> None:
    assert "2026-01-15T10:04:58.123456+00:00" == parse_instant(
        "2026-01-15T10:04:58.1234567Z", what="x").isoformat()
    assert "2026-01-15T09:04:58+00:00" == parse_instant(
        "2026-01-15T10:04:58+01:00", what="x").isoformat()
    with pytest.raises(SamlError):
        parse_instant("15/01/2026", what="x")


def test_the_assertion_in_response_to_must_match_too() -> None:
    root = build()
    descendant(assertion_of(root), q(SAML, "SubjectConfirmationData")).set(
        "InResponseTo", "_another-request")
    sign(assertion_of(root))
    assert "in_response_to_mismatch" == code_of(root)


def test_a_second_bearer_confirmation_can_be_the_matching_one() -> None:
    root = build()
    confirmation = descendant(assertion_of(root), q(SAML, "SubjectConfirmation"))
    other = etree.fromstring(etree.tostring(confirmation))
    descendant(other, q(SAML, "SubjectConfirmationData")).set("Recipient",
                                                              "https://elsewhere.test/acs")
    confirmation.addprevious(other)
    sign(assertion_of(root))
    assert validate(root).identity.subject


def test_recipient_must_be_exact_not_a_prefix() -> None:
    assert "recipient_mismatch" == code_of(signed_assertion(recipient=ACS_URL + "/extra"))
    assert "recipient_mismatch" == code_of(signed_assertion(recipient=ACS_URL + "?x=1"))


def test_signed_response_needs_a_destination() -> None:
    root = signed_assertion()
    del root.attrib["Destination"]
    sign(root)
    assert "destination_mismatch" == code_of(root)


def test_unsigned_response_without_destination_is_fine() -> None:
    root = signed_assertion()
    del root.attrib["Destination"]
    assert validate(root).identity.subject


def test_every_audience_restriction_must_name_the_sp() -> None:
    root = build()
    conditions = descendant(assertion_of(root), q(SAML, "Conditions"))
    extra = etree.SubElement(conditions, q(SAML, "AudienceRestriction"))
    etree.SubElement(extra, q(SAML, "Audience")).text = "https://other.test"
    sign(assertion_of(root))
    assert "audience_mismatch" == code_of(root)


def test_an_unknown_condition_is_refused() -> None:
    root = build()
    conditions = descendant(assertion_of(root), q(SAML, "Conditions"))
    etree.SubElement(conditions, q(SAML, "Condition"))
    sign(assertion_of(root))
    assert "invalid_response" == code_of(root)


def test_an_assertion_needs_an_authn_statement() -> None:
    root = build()
    assertion = assertion_of(root)
    assertion.remove(descendant(assertion, q(SAML, "AuthnStatement")))
    sign(assertion)
    assert "invalid_response" == code_of(root)


def test_issuer_with_another_format_is_refused() -> None:
    root = build()
    descendant(assertion_of(root), q(SAML, "Issuer")).set(
        "Format", "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    sign(assertion_of(root))
    assert "issuer_mismatch" == code_of(root)


def test_unspecified_and_unusual_name_id_formats_get_a_note() -> None:
    unspecified = validate(signed_assertion(
        name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"))
    assert any("unspecified" in n for n in unspecified.identity.notes)
    kerberos = validate(signed_assertion(
        name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"))
    assert any("unusual NameID format" in n for n in kerberos.identity.notes)


def test_empty_name_id_is_refused() -> None:
    assert "invalid_response" == code_of(signed_assertion(name_id=""))


def test_text_of_refuses_child_elements_and_reads_past_comments() -> None:
    node = etree.fromstring("<a>admin@x.org<!-- c -->.evil.com<?pi x?>!</a>")
    assert "admin@x.org.evil.com!" == text_of(node)
    with pytest.raises(SamlError):
        text_of(etree.fromstring("<a>x<b>y</b></a>"))


def test_attribute_values_and_nil() -> None:
    root = build()
    statement = descendant(assertion_of(root), q(SAML, "AttributeStatement"))
    attribute = etree.SubElement(statement, q(SAML, "Attribute"), Name="empty")
    etree.SubElement(attribute, q(SAML, "AttributeValue"),
                     {"{http://www.w3.org/2001/XMLSchema-instance}nil": "true"})
    sign(assertion_of(root))
    claims = validate(root).identity.claims
    assert [] == claims["empty"]


# -- keys -------------------------------------------------------------------------------------

def test_pinned_certificates_are_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    root = signed_assertion()
    validate(root)  # warm the cache
    calls: list[object] = []
    real = saml_keys.x509.load_pem_x509_certificate

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    # xmlsec.Key is immutable; the certificate parse next to it is what we count
    monkeypatch.setattr(saml_keys.x509, "load_pem_x509_certificate", counting)
    for _ in range(3):
        validate(root)
    assert [] == calls


def test_an_unreadable_pinned_certificate_fails_closed() -> None:
    config = dataclasses.replace(
        the_config(), idp_certs=("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",))
    with pytest.raises(SamlError) as caught:
        validate_response(encode(signed_assertion()), sp=the_sp(), config=config,
                          expected_in_response_to=REQUEST_ID, now=NOW)
    assert "invalid_response" == caught.value.code
    assert "BEGIN" not in str(caught.value)


def test_conditions_expiry_is_checked_on_its_own() -> None:
    root = build()
    descendant(assertion_of(root), q(SAML, "Conditions")).set("NotOnOrAfter",
                                                              "2026-01-15T09:50:00Z")
    sign(assertion_of(root))
    assert "expired" == code_of(root)


def test_rsa_1_5_key_transport_is_refused() -> None:
    root = encrypt_assertion(signed_assertion(),
                             key_transport=xmlsec.constants.TransformRsaPkcs1)
    assert "algorithm_forbidden" == code_of(root)


def test_encrypted_assertion_for_another_sp_key_fails_cleanly() -> None:
    other = dataclasses.replace(the_sp(),
                                private_key_pem=(VECTORS / "keys" / "attacker.key").read_text())
    with pytest.raises(SamlError) as caught:
        validate_response(encode((VECTORS / "encrypted-assertion.xml").read_bytes()), sp=other,
                          config=the_config(), expected_in_response_to=REQUEST_ID, now=NOW)
    assert "decryption_failed" == caught.value.code


def test_a_signature_must_be_enveloped_in_what_it_signs() -> None:
    root = signed_assertion()
    signature = descendant(assertion_of(root), "{http://www.w3.org/2000/09/xmldsig#}Signature")
    with pytest.raises(SamlError) as caught:
        check_signature_shape(signature, root, allow_sha1=False)
    assert "signature_wrapping" == caught.value.code


def test_encrypted_key_beside_encrypted_data_is_found() -> None:
    # Shibboleth's layout: EncryptedKey a sibling of EncryptedData, named by RetrievalMethod
    root = etree.fromstring((VECTORS / "encrypted-assertion.xml").read_bytes())
    wrapper = descendant(root, q(SAML, "EncryptedAssertion"))
    key = descendant(wrapper, "{http://www.w3.org/2001/04/xmlenc#}EncryptedKey")
    key_info = key.getparent()
    key.set("Id", "_key-1")
    wrapper.append(key)
    etree.SubElement(key_info, "{http://www.w3.org/2000/09/xmldsig#}RetrievalMethod",
                     Type="http://www.w3.org/2001/04/xmlenc#EncryptedKey", URI="#_key-1")
    assert validate(root).identity.subject


def test_a_retrieval_method_pointing_elsewhere_is_refused() -> None:
    root = etree.fromstring((VECTORS / "encrypted-assertion.xml").read_bytes())
    key_info = descendant(descendant(root, "{http://www.w3.org/2001/04/xmlenc#}EncryptedData"),
                          "{http://www.w3.org/2000/09/xmldsig#}KeyInfo")
    etree.SubElement(key_info, "{http://www.w3.org/2000/09/xmldsig#}RetrievalMethod",
                     URI="http://attacker.example/key")
    assert "xml_forbidden" == code_of(root)


def test_a_broken_response_signature_fails_even_with_a_good_assertion_signature() -> None:
    root = sign(signed_assertion())
    root.set("IssueInstant", "2026-01-15T09:59:59Z")  # after signing: the digest no longer fits
    assert "signature_invalid" == code_of(root)


def test_an_ecdsa_idp_key_verifies() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=365))
            .not_valid_after(NOW + timedelta(days=3650)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    root = build()
    assertion = assertion_of(root)
    signature = xmlsec.template.create(assertion, xmlsec.constants.TransformExclC14N,
                                       xmlsec.constants.TransformEcdsaSha256, ns="ds")
    descendant(assertion, q(SAML, "Issuer")).addnext(signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256,
                                        uri=f"#{assertion.get('ID')}")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
    xmlsec.tree.add_ids(root, ["ID"])
    ctx.sign(signature)
    result = validate_response(encode(root), sp=the_sp(),
                               config=dataclasses.replace(the_config(), idp_certs=(cert_pem,)),
                               expected_in_response_to=REQUEST_ID, now=NOW)
    assert result.identity.subject


def test_canonicalisation_with_comments_is_refused() -> None:
    root = signed_assertion()
    method = descendant(assertion_of(root),
                        "{http://www.w3.org/2000/09/xmldsig#}CanonicalizationMethod")
    method.set("Algorithm", "http://www.w3.org/2001/10/xml-exc-c14n#WithComments")
    assert "algorithm_forbidden" == code_of(root)
