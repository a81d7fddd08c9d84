"""Single Logout (SAML 2.0 Profiles 4.4): the LogoutRequest and LogoutResponse (Core 3.7) over
HTTP-Redirect (Bindings 3.4) and HTTP-POST (Bindings 3.5), both ways.

Outgoing messages are signed with the connection's SP key: over the exact query string for
HTTP-Redirect (the AuthnRequest's signer), and by an enveloped XML signature (libxmlsec1,
exclusive c14n, rsa-sha256) for HTTP-POST. Incoming messages must be signed by one of the IdP's
pinned certificates: the query signature (Bindings 3.4.4.1, verified by libxmlsec1 over the
octets as received) or the enveloped signature of the root element (verified as the ACS
verifies a Response: shape first, then xmlsec, no key from the message). Only the verified
root element is read. A message without a signature is refused (``signature_missing``).

This module never touches the database or the clock: the caller passes ``now`` and spends
message IDs in its replay cache.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote_plus
from xml.sax.saxutils import escape, quoteattr

import xmlsec
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.protocols.saml.authn_request import (
    ECDSA_SHA256,
    MAX_RELAY_STATE_BYTES,
    quote_base64,
    sign_query,
)
from jitprov.protocols.saml.config import SamlConfig
from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.keys import certificate_key, private_key, xmlsec_private_key
from jitprov.protocols.saml.parsing import (
    BINDING_POST,
    BINDING_REDIRECT,
    SAML,
    SAMLP,
    STATUS_SUCCESS,
    XML_ID,
    format_instant,
    parse_instant,
    parse_xml,
    text_of,
)
from jitprov.protocols.saml.signature import RSA_SHA1, signature_of, verify_signature
from jitprov.protocols.saml.sp import SpSettings

LOGOUT_REQUEST = f"{{{SAMLP}}}LogoutRequest"
LOGOUT_RESPONSE = f"{{{SAMLP}}}LogoutResponse"
_ISSUER = f"{{{SAML}}}Issuer"
_NAME_ID = f"{{{SAML}}}NameID"
_BASE_ID = f"{{{SAML}}}BaseID"
_ENCRYPTED_ID = f"{{{SAML}}}EncryptedID"
_SESSION_INDEX = f"{{{SAMLP}}}SessionIndex"
_STATUS = f"{{{SAMLP}}}Status"
_STATUS_CODE = f"{{{SAMLP}}}StatusCode"

STATUS_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"
#: a front-channel message travels in seconds: one issued longer ago than this (plus the
#: connection's clock skew) is refused as stale
MAX_MESSAGE_AGE = timedelta(minutes=5)
#: how many SessionIndex elements one LogoutRequest may name
MAX_SESSION_INDEXES = 16
#: the query signature algorithms accepted (those of the XML signatures; SHA-1 by option)
_QUERY_ALGORITHMS: dict[str, Any] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.constants.TransformRsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.constants.TransformRsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.constants.TransformRsaSha512,
    ECDSA_SHA256: xmlsec.constants.TransformEcdsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384":
        xmlsec.constants.TransformEcdsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":
        xmlsec.constants.TransformEcdsaSha512,
}


@dataclass(frozen=True, slots=True)
class LogoutNameId:
    """The NameID of a sign-in, as the IdP wrote it: a LogoutRequest must name it exactly so
    (value, Format and qualifiers), or the IdP does not recognise the principal."""

    value: str
    format: str | None = None
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A signed message on its way to the IdP: for HTTP-Redirect, ``url`` carries it (send
    the browser there); for HTTP-POST, post ``fields`` to ``url`` from an auto-submitting form.
    ``id`` is the message's ID (a request's: the response's InResponseTo must equal it)."""

    id: str
    binding: str
    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A logout message whose signature verified: ``root`` is the verified element (a
    LogoutRequest or a LogoutResponse), the only one to read."""

    root: etree._Element
    binding: str
    relay_state: str | None

    @property
    def is_request(self) -> bool:
        return bool(self.root.tag == LOGOUT_REQUEST)

    @property
    def id(self) -> str | None:
        value = self.root.get("ID")
        return str(value) if value else None


@dataclass(frozen=True, slots=True)
class LogoutRequestData:
    """What a verified LogoutRequest asks: end the sessions of ``name_id`` (of the sign-ins
    ``session_indexes`` only, when there are any). Keep ``id`` until ``replay_until``."""

    id: str
    name_id: LogoutNameId
    session_indexes: tuple[str, ...]
    replay_until: datetime


# -- outgoing ---------------------------------------------------------------------------------

def _new_id() -> str:
    return f"_{secrets.token_hex(16)}"


def _deflate(xml: str) -> str:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)  # raw
    return base64.b64encode(compressor.compress(xml.encode()) + compressor.flush()).decode()


def _redirect(url: str, parameter: str, xml: str, relay_state: str | None,
              private_key_pem: str) -> str:
    query = f"{parameter}=" + quote_base64(_deflate(xml))
    if relay_state:
        query += "&RelayState=" + quote(relay_state, safe="")
    query = sign_query(query, private_key_pem)
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _check_relay_state(relay_state: str | None) -> None:
    if relay_state and len(relay_state.encode()) > MAX_RELAY_STATE_BYTES:
        raise SamlError("invalid_response", "the RelayState is longer than 80 bytes")


def build_logout_request(sp: SpSettings, destination: str, name_id: LogoutNameId,
                         session_index: str | None, *, now: datetime,
                         relay_state: str | None = None) -> OutgoingMessage:
    """A signed LogoutRequest (Core 3.7.1) from this SP to ``destination`` (the IdP's
    HTTP-Redirect SingleLogoutService), for the principal ``name_id`` as the IdP named it and
    the sign-in ``session_index``; it expires (NotOnOrAfter) five minutes after ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _check_relay_state(relay_state)
    request_id = _new_id()
    attributes = "".join(
        f" {name}={quoteattr(value)}" for name, value in (
            ("Format", name_id.format), ("NameQualifier", name_id.name_qualifier),
            ("SPNameQualifier", name_id.sp_name_qualifier)) if value)
    index = (f"<samlp:SessionIndex>{escape(session_index)}</samlp:SessionIndex>"
             if session_index else "")
    xml = (
        '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{request_id}" Version="2.0" IssueInstant="{format_instant(now)}" '
        f'NotOnOrAfter="{format_instant(now + MAX_MESSAGE_AGE)}" '
        f"Destination={quoteattr(destination)}>"
        f"<saml:Issuer>{escape(sp.entity_id)}</saml:Issuer>"
        f"<saml:NameID{attributes}>{escape(name_id.value)}</saml:NameID>{index}"
        "</samlp:LogoutRequest>")
    url = _redirect(destination, "SAMLRequest", xml, relay_state, sp.private_key_pem)
    return OutgoingMessage(id=request_id, binding=BINDING_REDIRECT, url=url, fields={})


def build_logout_response(sp: SpSettings, destination: str, *, binding: str,
                          in_response_to: str | None, status: str = STATUS_SUCCESS,
                          message: str | None = None, relay_state: str | None = None,
                          now: datetime) -> OutgoingMessage:
    """A signed LogoutResponse (Core 3.7.2) to ``destination`` by ``binding`` (HTTP-Redirect:
    signed query; HTTP-POST: enveloped XML signature). ``status`` is a top-level status code;
    ``message`` a StatusMessage (one readable sentence, never a secret)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _check_relay_state(relay_state)
    response_id = _new_id()
    irt = f" InResponseTo={quoteattr(in_response_to)}" if in_response_to else ""
    text = f"<samlp:StatusMessage>{escape(message)}</samlp:StatusMessage>" if message else ""
    xml = (
        '<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="{response_id}" Version="2.0" IssueInstant="{format_instant(now)}" '
        f"Destination={quoteattr(destination)}{irt}>"
        f"<saml:Issuer>{escape(sp.entity_id)}</saml:Issuer>"
        f'<samlp:Status><samlp:StatusCode Value="{status}"/>{text}</samlp:Status>'
        "</samlp:LogoutResponse>")
    if binding == BINDING_REDIRECT:
        url = _redirect(destination, "SAMLResponse", xml, relay_state, sp.private_key_pem)
        return OutgoingMessage(id=response_id, binding=binding, url=url, fields={})
    if binding != BINDING_POST:
        raise ValueError(f"unsupported binding {binding}")
    signed = sign_enveloped(xml.encode(), sp)
    fields = {"SAMLResponse": base64.b64encode(signed).decode()}
    if relay_state:
        fields["RelayState"] = relay_state
    return OutgoingMessage(id=response_id, binding=binding, url=destination, fields=fields)


def sign_enveloped(xml: bytes, sp: SpSettings) -> bytes:
    """``xml`` (a SAML protocol message we built) with an enveloped signature right after its
    Issuer (Core 5.4.2: exclusive c14n, the one Reference is the root's ID), made by
    libxmlsec1 with the SP key; the SP certificate goes into KeyInfo as a hint."""
    root = etree.fromstring(xml)
    method = (xmlsec.constants.TransformEcdsaSha256
              if isinstance(private_key(sp.private_key_pem), ec.EllipticCurvePrivateKey)
              else xmlsec.constants.TransformRsaSha256)
    signature = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N, method)
    root[0].addnext(signature)
    reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256,
                                              uri="#" + root.get("ID"))
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec_private_key(sp.private_key_pem)
    ctx.key.load_cert_from_memory(sp.certificate.encode(), xmlsec.constants.KeyDataFormatPem)
    ctx.register_id(root, "ID")
    ctx.sign(signature)
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


# -- incoming ---------------------------------------------------------------------------------

def read_redirect_message(raw_query: str, config: SamlConfig) -> IncomingMessage:
    """A LogoutRequest or LogoutResponse received by HTTP-Redirect: ``raw_query`` is the
    query string exactly as received (the signature covers the URL-encoded octets, Bindings
    3.4.4.1). The Signature over ``SAMLRequest|SAMLResponse=..&RelayState=..&SigAlg=..`` must
    verify with a pinned IdP certificate; then the DEFLATEd message (at most
    ``config.max_response_bytes`` inflated) is parsed. Raises SamlError."""
    if len(raw_query) > 2 * config.max_response_bytes:
        raise SamlError("too_large", "the logout message is too large")
    raw: dict[str, str] = {}
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if name in ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature"):
            if name in raw:
                raise SamlError("invalid_response", f"the query repeats {name}")
            raw[name] = value
    kinds = [name for name in ("SAMLRequest", "SAMLResponse") if name in raw]
    if len(kinds) != 1:
        raise SamlError("invalid_response", "the query carries no SAMLRequest or "
                                            "SAMLResponse (or both)")
    kind = kinds[0]
    if "Signature" not in raw or "SigAlg" not in raw:
        raise SamlError("signature_missing", "the logout message is not signed")
    sigalg = unquote_plus(raw["SigAlg"])
    transform = _QUERY_ALGORITHMS.get(sigalg)
    if transform is None and config.allow_sha1 and sigalg == RSA_SHA1:
        transform = xmlsec.constants.TransformRsaSha1
    if transform is None:
        raise SamlError("algorithm_forbidden",
                        f"signature method {sigalg[:100]!r} is not allowed")
    signed = f"{kind}={raw[kind]}"
    if "RelayState" in raw:
        signed += f"&RelayState={raw['RelayState']}"
    signed += f"&SigAlg={raw['SigAlg']}"
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise SamlError("signature_invalid", "the Signature is not base64") from None
    _verify_query(signed.encode(), transform, signature, config.idp_certs)
    try:
        deflated = base64.b64decode(unquote_plus(raw[kind]), validate=True)
        inflater = zlib.decompressobj(-15)
        data = inflater.decompress(deflated, config.max_response_bytes + 1)
    except (binascii.Error, ValueError, zlib.error):
        raise SamlError("invalid_response", f"the {kind} is not DEFLATE and base64") from None
    if len(data) > config.max_response_bytes or inflater.unconsumed_tail:
        raise SamlError("too_large", "the logout message is too large")
    root = parse_xml(data, what="logout message")
    _check_root(root, kind)
    relay = unquote_plus(raw["RelayState"]) if "RelayState" in raw else None
    return IncomingMessage(root=root, binding=BINDING_REDIRECT, relay_state=relay)


def _verify_query(signed: bytes, transform: Any, signature: bytes,
                  pinned_certs: tuple[str, ...]) -> None:
    for pem in pinned_certs:
        ctx = xmlsec.SignatureContext()
        ctx.key = certificate_key(pem)[0]
        try:
            ctx.verify_binary(signed, transform, signature)
        except xmlsec.Error:
            continue
        return
    raise SamlError("signature_invalid",
                    "the signature does not verify with the IdP's pinned certificate(s)")


def read_post_message(field: str, value: str, relay_state: str | None,
                      config: SamlConfig) -> IncomingMessage:
    """A LogoutRequest (``field`` SAMLRequest) or LogoutResponse (SAMLResponse) received by
    HTTP-POST: base64, hardened parse (no DTD), one element per ID, and the root's enveloped
    signature verified with a pinned IdP certificate. Raises SamlError."""
    if len(value) > 2 * config.max_response_bytes:
        raise SamlError("too_large", "the logout message is too large")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlError("invalid_response", f"the {field} field is not base64") from None
    if len(data) > config.max_response_bytes:
        raise SamlError("too_large", "the logout message is too large")
    root = parse_xml(data, what="logout message")
    _check_root(root, field)
    seen: set[str] = set()
    for element in root.iter():
        for name in ("ID", XML_ID):
            found = element.get(name)
            if found is not None:
                if found in seen:
                    raise SamlError("signature_wrapping", "two elements share one ID")
                seen.add(found)
    try:
        xmlsec.tree.add_ids(root, ["ID"])
    except xmlsec.Error:
        raise SamlError("signature_wrapping", "two elements share one ID") from None
    signature = signature_of(root)
    if signature is None:
        raise SamlError("signature_missing", "the logout message is not signed")
    verify_signature(signature, root, config.idp_certs, allow_sha1=config.allow_sha1)
    return IncomingMessage(root=root, binding=BINDING_POST, relay_state=relay_state)


def _check_root(root: etree._Element, kind: str) -> None:
    expected = LOGOUT_REQUEST if kind == "SAMLRequest" else LOGOUT_RESPONSE
    if root.tag != expected:
        raise SamlError("invalid_response", "the message is not a SAML 2.0 "
                        + ("LogoutRequest" if kind == "SAMLRequest" else "LogoutResponse"))
    if root.get("Version") != "2.0":
        raise SamlError("invalid_response", "the message is not SAML version 2.0")
    if not root.get("ID"):
        raise SamlError("invalid_response", "the message has no ID")


def _check_envelope(root: etree._Element, sp: SpSettings, config: SamlConfig,
                    now: datetime) -> datetime:
    """Destination (required: the message is signed, Bindings 3.4.5.2 and 3.5.5.2), Issuer
    (required, Profiles 4.4.4), IssueInstant within the window. Returns the IssueInstant."""
    destination = root.get("Destination")
    if destination != sp.slo_url:
        raise SamlError("destination_mismatch", "the logout message was sent to another "
                                                "Single Logout URL (Destination)")
    issuers = [child for child in root if child.tag == _ISSUER]
    if len(issuers) != 1 or text_of(issuers[0]).strip() != config.idp_entity_id:
        raise SamlError("issuer_mismatch", "the Issuer is not this connection's IdP")
    skew = timedelta(seconds=config.clock_skew_seconds)
    issued = parse_instant(root.get("IssueInstant"), what="IssueInstant")
    if issued > now + skew:
        raise SamlError("not_yet_valid", "the logout message is issued in the future")
    if issued < now - skew - MAX_MESSAGE_AGE:
        raise SamlError("expired", "the logout message is too old")
    return issued


def check_logout_request(message: IncomingMessage, sp: SpSettings, config: SamlConfig, *,
                         now: datetime) -> LogoutRequestData:
    """The verified LogoutRequest's envelope (Destination = our SLO URL, Issuer = the IdP,
    IssueInstant and NotOnOrAfter) and what it asks: the NameID (a BaseID or EncryptedID is
    refused) and the SessionIndex values. Raises SamlError."""
    root = message.root
    issued = _check_envelope(root, sp, config, now)
    skew = timedelta(seconds=config.clock_skew_seconds)
    until = issued + skew + MAX_MESSAGE_AGE
    not_on_or_after = root.get("NotOnOrAfter")
    if not_on_or_after is not None:
        expires = parse_instant(not_on_or_after, what="NotOnOrAfter")
        if now - skew >= expires:
            raise SamlError("expired", "the logout request has expired (NotOnOrAfter)")
        until = max(until, expires + skew)
    if any(child.tag in (_BASE_ID, _ENCRYPTED_ID) for child in root):
        raise SamlError("invalid_response", "only a plain NameID is supported in a logout "
                                            "request")
    names = [child for child in root if child.tag == _NAME_ID]
    if len(names) != 1 or not text_of(names[0]).strip():
        raise SamlError("invalid_response", "the logout request must name exactly one NameID")
    node = names[0]
    name_id = LogoutNameId(value=text_of(node).strip(), format=node.get("Format"),
                           name_qualifier=node.get("NameQualifier"),
                           sp_name_qualifier=node.get("SPNameQualifier"))
    indexes = tuple(text_of(child).strip() for child in root if child.tag == _SESSION_INDEX)
    if len(indexes) > MAX_SESSION_INDEXES or any(not i or len(i) > 255 for i in indexes):
        raise SamlError("invalid_response", "the logout request's SessionIndex values are "
                                            "empty, too long or too many")
    return LogoutRequestData(id=str(root.get("ID")), name_id=name_id,
                             session_indexes=indexes, replay_until=until)


def check_logout_response(message: IncomingMessage, sp: SpSettings, config: SamlConfig, *,
                          now: datetime) -> tuple[str | None, str]:
    """The verified LogoutResponse's envelope (as for a request) and (InResponseTo, the
    top-level status code, with the second-level one after a slash when present)."""
    root = message.root
    _check_envelope(root, sp, config, now)
    status = root.find(_STATUS)
    code = status.find(_STATUS_CODE) if status is not None else None
    value = str(code.get("Value") or "") if code is not None else ""
    second = code.find(_STATUS_CODE) if code is not None else None
    if second is not None and second.get("Value"):
        value += f"/{second.get('Value')}"
    irt = root.get("InResponseTo")
    return (str(irt) if irt else None), value[:300]
