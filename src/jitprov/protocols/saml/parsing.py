"""Hardened XML parsing and the SAML vocabulary (namespaces, formats, xs:dateTime)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.protocols.saml.errors import SamlError

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BINDING_REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
BINDING_POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
PROTOCOL_SAML2 = "urn:oasis:names:tc:SAML:2.0:protocol"

_local = threading.local()  # lxml parsers must not be shared between threads
_DTD_MARKERS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False, remove_blank_text=False,
                                 collect_ids=False)
        _local.parser = parser
    return parser


def parse_xml(data: bytes, *, what: str = "SAML message") -> etree._Element:
    """Parse untrusted XML: no DTD at all (a DOCTYPE is refused, not ignored), no entity
    expansion, no network, libxml2's default size limits. Raises SamlError ``xml_forbidden``
    for a DTD and ``invalid_response`` for anything that is not well-formed XML."""
    if _DTD_MARKERS.search(data):  # fast path; the docinfo check below catches other encodings
        raise SamlError("xml_forbidden", f"the {what} carries a DTD, which is refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError:
        raise SamlError("invalid_response", f"the {what} is not well-formed XML") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise SamlError("xml_forbidden", f"the {what} carries a DTD, which is refused")
    return root


def text_of(node: etree._Element) -> str:
    """The full text of a simple-content element: every text node, comments and processing
    instructions skipped but what follows them kept. ``.text`` alone stops at the first comment
    (``admin@x.org<!---->.evil.com`` would read ``admin@x.org``); this returns what exclusive
    c14n without comments signed: ``admin@x.org.evil.com``. Child elements are refused."""
    parts = [node.text or ""]
    for child in node:
        if isinstance(child.tag, str):
            raise SamlError("invalid_response",
                            f"{etree.QName(node).localname} must hold text only")
        parts.append(child.tail or "")
    return "".join(parts)


def value_text(node: etree._Element) -> str:
    """The string value of an AttributeValue (text of all descendants, comments skipped):
    structured values such as an eduPersonTargetedID NameID are read as their text."""
    return "".join(node.itertext())


_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


def parse_instant(value: str | None, *, what: str) -> datetime:
    """An xs:dateTime as SAML writes it (Core 1.3.3: UTC, ``Z``); offsets are honoured, a
    missing zone is read as UTC, fractions beyond microseconds (.NET writes seven digits) are
    truncated. Raises SamlError ``invalid_response``."""
    m = _DATETIME.match(value.strip()) if value else None
    if m is None:
        raise SamlError("invalid_response", f"{what} is not a valid xs:dateTime")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        instant = datetime(int(year), int(month), int(day), int(hour), int(minute),
                           int(second), int((frac or "0")[:6].ljust(6, "0")), tzinfo=UTC)
    except ValueError:
        raise SamlError("invalid_response", f"{what} is not a valid xs:dateTime") from None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        instant -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return instant


def format_instant(instant: datetime) -> str:
    """``2026-01-15T10:00:00Z`` (SAML Core 1.3.3), seconds precision."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
