"""A test IdP that signs SAML Responses in process (python-xmlsec), for tests and benchmarks
that must not touch the network. Test code may sign; jitprov's SP only verifies.

``FakeSamlIdp().metadata()`` is the IdP metadata to register a connection with;
``.response(...)`` builds a signed, base64-encoded ``SAMLResponse`` form value.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import zlib
from functools import cache
from typing import Literal
from urllib.parse import parse_qs, quote, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.core.errors import Conflict
from jitprov.protocols.saml.authn_request import sign_query
from jitprov.services import admin
from jitprov.services.context import ServiceContext

_T = xmlsec.constants
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"

ENTITY_ID = "https://idp.test.example/saml"
SSO_URL = "https://idp.test.example/sso"
SLO_URL = "https://idp.test.example/slo"


@cache
def idp_keypair(generation: int = 0) -> tuple[str, str]:
    """(private key PEM, certificate PEM) of the test IdP, made once per test session per
    ``generation`` (a new generation is a key rollover)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitprov test IdP")])
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=36500))
            .sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            cert.public_bytes(serialization.Encoding.PEM).decode())


def _cert_base64(pem: str) -> str:
    return "".join(line for line in pem.strip().splitlines() if "-----" not in line)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: the AuthnContextClassRef of a password sign-in over TLS (what most IdPs send without MFA)
PASSWORD_PROTECTED_TRANSPORT = (
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")  # noqa: S105 - a URI


class FakeSamlIdp:
    def __init__(self, entity_id: str = ENTITY_ID, sso_url: str = SSO_URL, *,
                 generation: int = 0, slo_url: str | None = None) -> None:
        self.entity_id = entity_id
        self.sso_url = sso_url
        #: the IdP's SingleLogoutService (both bindings) in its metadata; None: no SLO
        self.slo_url = slo_url
        self.key_pem, self.cert_pem = idp_keypair(generation)

    def metadata(self) -> bytes:
        root = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap={"md": MD, "ds": DS},
                             entityID=self.entity_id)
        idp = etree.SubElement(root, f"{{{MD}}}IDPSSODescriptor",
                               protocolSupportEnumeration=SAMLP)
        kd = etree.SubElement(idp, f"{{{MD}}}KeyDescriptor", use="signing")
        info = etree.SubElement(kd, f"{{{DS}}}KeyInfo")
        data = etree.SubElement(info, f"{{{DS}}}X509Data")
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = _cert_base64(self.cert_pem)
        if self.slo_url:
            for binding in (REDIRECT, POST):
                etree.SubElement(idp, f"{{{MD}}}SingleLogoutService", Binding=binding,
                                 Location=self.slo_url)
        etree.SubElement(idp, f"{{{MD}}}NameIDFormat").text = PERSISTENT
        etree.SubElement(idp, f"{{{MD}}}SingleSignOnService", Binding=REDIRECT,
                         Location=self.sso_url)
        return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

    def response(self, *, acs_url: str, audience: str, subject: str,
                 attributes: dict[str, list[str]], in_response_to: str | None,
                 now: dt.datetime, assertion_id: str | None = None,
                 lifetime: dt.timedelta = dt.timedelta(minutes=5),
                 signed: Literal["assertion", "response", "both"] = "assertion",
                 class_ref: str = PASSWORD_PROTECTED_TRANSPORT,
                 session_index: str | None = None) -> str:
        """A Response with one Assertion, base64 (the ``SAMLResponse`` form value). ``signed``
        says what carries a signature: the Assertion (Entra's default), the Response only
        (Keycloak's default), or both (Okta, SimpleSAMLphp with WantAssertionsSigned).
        ``class_ref`` is the AuthnStatement's AuthnContextClassRef (how the person signed in)."""
        irt = {"InResponseTo": in_response_to} if in_response_to else {}
        response = etree.Element(f"{{{SAMLP}}}Response", nsmap={"samlp": SAMLP, "saml": SAML},
                                 ID="_r" + secrets.token_hex(16), Version="2.0",
                                 IssueInstant=_iso(now), Destination=acs_url, **irt)
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = self.entity_id
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode",
                         Value="urn:oasis:names:tc:SAML:2.0:status:Success")
        aid = assertion_id or "_a" + secrets.token_hex(16)
        assertion = etree.SubElement(response, f"{{{SAML}}}Assertion", ID=aid, Version="2.0",
                                     IssueInstant=_iso(now))
        etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = self.entity_id
        subj = etree.SubElement(assertion, f"{{{SAML}}}Subject")
        etree.SubElement(subj, f"{{{SAML}}}NameID", Format=PERSISTENT).text = subject
        conf = etree.SubElement(subj, f"{{{SAML}}}SubjectConfirmation",
                                Method="urn:oasis:names:tc:SAML:2.0:cm:bearer")
        etree.SubElement(conf, f"{{{SAML}}}SubjectConfirmationData",
                         NotOnOrAfter=_iso(now + lifetime), Recipient=acs_url, **irt)
        cond = etree.SubElement(assertion, f"{{{SAML}}}Conditions",
                                NotBefore=_iso(now - dt.timedelta(seconds=30)),
                                NotOnOrAfter=_iso(now + lifetime))
        restriction = etree.SubElement(cond, f"{{{SAML}}}AudienceRestriction")
        etree.SubElement(restriction, f"{{{SAML}}}Audience").text = audience
        authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement",
                                 AuthnInstant=_iso(now),
                                 SessionIndex=session_index or "_s" + secrets.token_hex(8))
        ctx_el = etree.SubElement(authn, f"{{{SAML}}}AuthnContext")
        etree.SubElement(ctx_el, f"{{{SAML}}}AuthnContextClassRef").text = class_ref
        statement = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
        for name, values in attributes.items():
            attr = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name,
                                    NameFormat=BASIC)
            for value in values:
                etree.SubElement(attr, f"{{{SAML}}}AttributeValue").text = value
        if signed in ("assertion", "both"):
            self._sign(assertion, after=assertion[0])
        if signed in ("response", "both"):
            self._sign(response, after=response[0])
        return base64.b64encode(etree.tostring(response)).decode()

    def logout_message(self, kind: Literal["LogoutRequest", "LogoutResponse"], *,
                       destination: str | None, now: dt.datetime,
                       binding: Literal["redirect", "post"] = "redirect",
                       name_id: str = "ada", session_indexes: tuple[str, ...] = (),
                       in_response_to: str | None = None, status: str = SUCCESS,
                       message_id: str | None = None, issuer: str | None = None,
                       signed: bool = True, key_pem: str | None = None,
                       relay_state: str | None = None) -> str:
        """A Single Logout message from this IdP. ``binding="redirect"``: the query string
        (SAMLRequest or SAMLResponse DEFLATEd, RelayState, SigAlg, Signature over them, as
        Bindings 3.4.4.1 says); ``"post"``: the base64 form value, its root signed enveloped.
        ``key_pem`` signs with another key (a forgery); ``signed=False`` sends no signature."""
        attrs = {"ID": message_id or "_l" + secrets.token_hex(16), "Version": "2.0",
                 "IssueInstant": _iso(now)}
        if destination is not None:
            attrs["Destination"] = destination
        if in_response_to is not None:
            attrs["InResponseTo"] = in_response_to
        root = etree.Element(f"{{{SAMLP}}}{kind}", nsmap={"samlp": SAMLP, "saml": SAML},
                             **attrs)
        etree.SubElement(root, f"{{{SAML}}}Issuer").text = issuer or self.entity_id
        if kind == "LogoutRequest":
            etree.SubElement(root, f"{{{SAML}}}NameID", Format=PERSISTENT).text = name_id
            for index in session_indexes:
                etree.SubElement(root, f"{{{SAMLP}}}SessionIndex").text = index
        else:
            status_el = etree.SubElement(root, f"{{{SAMLP}}}Status")
            etree.SubElement(status_el, f"{{{SAMLP}}}StatusCode", Value=status)
        field = "SAMLRequest" if kind == "LogoutRequest" else "SAMLResponse"
        if binding == "post":
            if signed:
                self._sign(root, after=root[0], key_pem=key_pem)
            return base64.b64encode(etree.tostring(root)).decode()
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        deflated = compressor.compress(etree.tostring(root)) + compressor.flush()
        query = f"{field}=" + quote(base64.b64encode(deflated).decode(), safe="")
        if relay_state:
            query += "&RelayState=" + quote(relay_state, safe="")
        return sign_query(query, key_pem or self.key_pem) if signed else query

    def _sign(self, element: etree._Element, *, after: etree._Element,
              key_pem: str | None = None) -> None:
        signature = xmlsec.template.create(element, _T.TransformExclC14N,
                                           _T.TransformRsaSha256)
        after.addnext(signature)
        ref = xmlsec.template.add_reference(signature, _T.TransformSha256,
                                            uri="#" + element.get("ID"))
        xmlsec.template.add_transform(ref, _T.TransformEnveloped)
        xmlsec.template.add_transform(ref, _T.TransformExclC14N)
        info = xmlsec.template.ensure_key_info(signature)
        xmlsec.template.add_x509_data(info)
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_memory((key_pem or self.key_pem).encode(),
                                         _T.KeyDataFormatPem)
        ctx.key.load_cert_from_memory(self.cert_pem.encode(), _T.KeyDataFormatPem)
        ctx.register_id(element, "ID")
        ctx.sign(signature)


# -- jitprov side -------------------------------------------------------------------------------

SAML_MAPPING = """\
profile:
  email: mail
  name: displayName
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - id: nurses
      grant: [nurse]
      when: contains(isMemberOf, 'Nurses')
"""

BASE_URL = "http://testserver"


def add_connection(ctx: ServiceContext, *, slug: str = "idp", tenant: str = "hospital",
                   idp: FakeSamlIdp | None = None, **options: object) -> FakeSamlIdp:
    """A tenant (created if missing) and a SAML connection to a FakeSamlIdp."""
    idp = idp or FakeSamlIdp()
    try:
        admin.create_tenant(ctx, tenant)
    except Conflict:
        pass
    admin.add_saml_connection(ctx, tenant=tenant, slug=slug, metadata_xml=idp.metadata(),
                              metadata_url=None, mapping=SAML_MAPPING,
                              mapping_source="saml.yaml", options=options)
    return idp


def request_id_of(redirect_url: str) -> str:
    """The ID of the AuthnRequest in an HTTP-Redirect URL (Bindings 3.4.4.1: DEFLATE)."""
    query = parse_qs(urlsplit(redirect_url).query)
    xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15).decode()
    match = re.search(r'\bID="([^"]+)"', xml)
    if match is None:
        raise ValueError(f"no AuthnRequest ID in {xml}")
    return match.group(1)


def ada(**overrides: list[str]) -> dict[str, list[str]]:
    attributes = {"mail": ["ada@hospital.example"], "displayName": ["Ada Lovelace"],
                  "isMemberOf": ["Nurses"]}
    attributes.update(overrides)
    return attributes
