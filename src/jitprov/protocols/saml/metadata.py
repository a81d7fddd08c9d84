"""SAML metadata: reading the IdP's, writing the SP's (SAML 2.0 Metadata, 2.3-2.4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.keys import pem_from_b64_der
from jitprov.protocols.saml.parsing import (
    BINDING_POST,
    BINDING_REDIRECT,
    DS,
    MD,
    NAMEID_EMAIL,
    NAMEID_PERSISTENT,
    PROTOCOL_SAML2,
    parse_instant,
    parse_xml,
    text_of,
)
from jitprov.protocols.saml.sp import SpSettings

_ENTITIES = f"{{{MD}}}EntitiesDescriptor"
_ENTITY = f"{{{MD}}}EntityDescriptor"
_IDPSSO = f"{{{MD}}}IDPSSODescriptor"
_KEY_DESCRIPTOR = f"{{{MD}}}KeyDescriptor"
_SSO_SERVICE = f"{{{MD}}}SingleSignOnService"
_SLO_SERVICE = f"{{{MD}}}SingleLogoutService"
_X509_CERTIFICATE = f"{{{DS}}}X509Certificate"
#: metadata aggregates (InCommon, eduGAIN) run to tens of megabytes; one IdP's is a few KB
MAX_METADATA_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class IdpMetadata:
    """What jitprov needs from an IdP's metadata. ``signing_certs`` are PEM, all accepted
    (a rollover publishes two); ``valid_until`` is the metadata's own validUntil (the earliest
    of the EntityDescriptor's and its enclosing EntitiesDescriptors'), if any."""

    entity_id: str
    sso_redirect_url: str
    signing_certs: tuple[str, ...]
    want_authn_requests_signed: bool
    valid_until: datetime | None
    #: SingleLogoutService by binding: (Location, ResponseLocation or Location)
    slo_redirect: tuple[str, str] | None = None
    slo_post: tuple[str, str] | None = None

    def slo_fields(self) -> dict[str, str | None]:
        """The Single Logout endpoints as ``SamlConfig`` fields."""
        redirect, post = self.slo_redirect, self.slo_post
        return {"idp_slo_url": redirect[0] if redirect else None,
                "idp_slo_response_url": redirect[1] if redirect else None,
                "idp_slo_post_url": post[0] if post else None,
                "idp_slo_post_response_url": post[1] if post else None}


def parse_idp_metadata(xml: bytes, *, entity_id: str | None = None) -> IdpMetadata:
    """Parse an EntityDescriptor (or pick ``entity_id`` out of an EntitiesDescriptor; without
    it, an aggregate of more than one IdP is an error). Hardened parse: no DTD, no entities,
    no network. Takes the SAML 2.0 IDPSSODescriptor's HTTP-Redirect SingleSignOnService and the
    KeyDescriptors with ``use="signing"`` or no ``use``. Raises SamlError ``invalid_metadata``
    (or ``xml_forbidden`` for a DTD). The metadata's own signature is not checked: fetch it
    over https from a URL the administrator gave."""
    if len(xml) > MAX_METADATA_BYTES:
        raise SamlError("invalid_metadata", "the IdP metadata is too large")
    try:
        root = parse_xml(xml, what="IdP metadata")
    except SamlError as exc:
        if exc.code == "xml_forbidden":
            raise
        raise SamlError("invalid_metadata", "the IdP metadata is not well-formed XML") from None
    if root.tag == _ENTITY:
        candidates = [root]
    elif root.tag == _ENTITIES:
        candidates = [e for e in root.iter(_ENTITY) if _idp_descriptor(e) is not None]
    else:
        raise SamlError("invalid_metadata", "not SAML metadata (no EntityDescriptor)")
    if entity_id is not None:
        candidates = [e for e in candidates if e.get("entityID") == entity_id]
        if not candidates:
            raise SamlError("invalid_metadata",
                            f"the metadata has no IdP with entity id {entity_id[:200]!r}")
    if len(candidates) != 1:
        what = "several IdPs; name the one to use" if candidates else "no IdP"
        raise SamlError("invalid_metadata", f"the metadata describes {what}")
    entity = candidates[0]
    found_id = entity.get("entityID")
    if not found_id:
        raise SamlError("invalid_metadata", "the EntityDescriptor has no entityID")
    idp = _idp_descriptor(entity)
    if idp is None:
        raise SamlError("invalid_metadata", "the entity is not a SAML 2.0 IdP "
                                            "(no IDPSSODescriptor)")
    redirect = [s.get("Location") for s in idp.iter(_SSO_SERVICE)
                if s.getparent() is idp and s.get("Binding") == BINDING_REDIRECT]
    if not redirect or not redirect[0]:
        raise SamlError("invalid_metadata",
                        "the IdP offers no HTTP-Redirect SingleSignOnService")
    certs: list[str] = []
    for descriptor in idp:
        if descriptor.tag != _KEY_DESCRIPTOR or descriptor.get("use") not in (None, "signing"):
            continue
        for node in descriptor.iter(_X509_CERTIFICATE):
            pem = pem_from_b64_der(text_of(node))
            if pem not in certs:
                certs.append(pem)
    if not certs:
        raise SamlError("invalid_metadata", "the IdP publishes no signing certificate")
    return IdpMetadata(entity_id=found_id, sso_redirect_url=str(redirect[0]),
                       signing_certs=tuple(certs),
                       want_authn_requests_signed=idp.get("WantAuthnRequestsSigned") in (
                           "true", "1"),
                       valid_until=_valid_until(entity),
                       slo_redirect=_slo_service(idp, BINDING_REDIRECT),
                       slo_post=_slo_service(idp, BINDING_POST))


def _slo_service(idp: etree._Element, binding: str) -> tuple[str, str] | None:
    """The first SingleLogoutService of ``binding``: (Location, ResponseLocation, which
    defaults to Location, Metadata 2.2.2)."""
    for service in idp:
        if service.tag == _SLO_SERVICE and service.get("Binding") == binding:
            location = service.get("Location")
            if location:
                return str(location), str(service.get("ResponseLocation") or location)
    return None


def _idp_descriptor(entity: etree._Element) -> etree._Element | None:
    for child in entity:
        if child.tag == _IDPSSO and PROTOCOL_SAML2 in (
                child.get("protocolSupportEnumeration") or "").split():
            return child
    return None


def _valid_until(entity: etree._Element) -> datetime | None:
    instants = []
    node: etree._Element | None = entity
    while node is not None:
        value = node.get("validUntil")
        if value:
            try:
                instants.append(parse_instant(value, what="validUntil"))
            except SamlError:
                raise SamlError("invalid_metadata", "the metadata's validUntil is not a "
                                                    "valid xs:dateTime") from None
        node = node.getparent()
    return min(instants) if instants else None


def build_sp_metadata(sp: SpSettings, *, want_assertions_signed: bool = False,
                      authn_requests_signed: bool = True) -> bytes:
    """The SP's EntityDescriptor (UTF-8 XML): SPSSODescriptor with AuthnRequestsSigned and
    WantAssertionsSigned, the certificate as KeyDescriptor use="signing" and use="encryption",
    the SingleLogoutService (HTTP-Redirect and HTTP-POST, one URL), NameIDFormat persistent
    and emailAddress, and the ACS (HTTP-POST, index 0, default).

    ``authn_requests_signed`` must be what :func:`build_authn_request` does (the connection's
    ``signs_authn_requests``): an IdP that trusts the metadata holds the SP to it, refusing an
    unsigned request the metadata promised signed. ``want_assertions_signed`` should be the
    connection's ``require_signed_assertion``: without it, a signed Response that envelopes
    the assertion is enough."""
    ns = {"md": MD, "ds": DS}
    root = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap=ns, entityID=sp.entity_id)
    descriptor = etree.SubElement(
        root, f"{{{MD}}}SPSSODescriptor", protocolSupportEnumeration=PROTOCOL_SAML2,
        AuthnRequestsSigned="true" if authn_requests_signed else "false",
        WantAssertionsSigned="true" if want_assertions_signed else "false")
    body = "".join(line for line in sp.certificate.strip().splitlines()
                   if not line.startswith("-----"))
    for use in ("signing", "encryption"):
        key = etree.SubElement(descriptor, f"{{{MD}}}KeyDescriptor", use=use)
        x509 = etree.SubElement(etree.SubElement(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
        etree.SubElement(x509, f"{{{DS}}}X509Certificate").text = body
    if sp.slo_url:  # Metadata 2.4.2: after the KeyDescriptors, before the NameIDFormats
        for binding in (BINDING_REDIRECT, BINDING_POST):
            etree.SubElement(descriptor, f"{{{MD}}}SingleLogoutService", Binding=binding,
                             Location=sp.slo_url)
    for fmt in (NAMEID_PERSISTENT, NAMEID_EMAIL):
        etree.SubElement(descriptor, f"{{{MD}}}NameIDFormat").text = fmt
    etree.SubElement(descriptor, f"{{{MD}}}AssertionConsumerService", Binding=BINDING_POST,
                     Location=sp.acs_url, index="0", isDefault="true")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data
