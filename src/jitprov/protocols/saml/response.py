"""The Assertion Consumer Service: validating a SAML Response (HTTP-POST binding).

Order of the checks (each refusal carries a stable :class:`SamlError` code):

1. size (``too_large``), base64 (``invalid_response``), hardened parse, no DTD
   (``xml_forbidden``), a ``samlp:Response`` root of version 2.0;
2. structure against signature wrapping (``signature_wrapping``): one Response element, no
   duplicate ``ID``/``xml:id`` values, exactly one Assertion or EncryptedAssertion as a direct
   child of the Response (``multiple_assertions``) and no Assertion anywhere else;
3. unsolicited responses (``unsolicited_response``), Status (``status_not_success``);
4. the Response signature, when present, verified against the pinned certificates (its one
   Reference must be the Response's own ID, so it covers the whole Response); the assertion is
   then taken again from inside that verified Response, as its one direct (Encrypted)Assertion
   child; then the Response's Destination (required when signed), Issuer and InResponseTo;
5. an EncryptedAssertion is decrypted with the SP key (``decryption_failed``), then the
   Assertion's own signature, when present, is verified. It is required when the Response is
   not signed, or when ``require_signed_assertion`` is set (``signature_missing``);
6. everything after that is read from the verified Assertion element only: Issuer, bearer
   SubjectConfirmation (Recipient, NotOnOrAfter, InResponseTo), Conditions (time window,
   AudienceRestriction required), AuthnStatement (its AuthnContextClassRefs become the claim
   ``auth_context``, see ``core/auth_context.py``), NameID format, attributes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta

import xmlsec
from lxml import etree  # type: ignore[import-untyped]  # no lxml-stubs in the pinned dev set

from jitprov.core.auth_context import AuthContext, with_auth_context
from jitprov.core.identity import ExternalIdentity
from jitprov.protocols.saml.config import SamlConfig
from jitprov.protocols.saml.encryption import decrypt_assertion
from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.parsing import (
    CM_BEARER,
    NAMEID_EMAIL,
    NAMEID_ENTITY,
    NAMEID_PERSISTENT,
    NAMEID_TRANSIENT,
    NAMEID_UNSPECIFIED,
    SAML,
    SAMLP,
    STATUS_SUCCESS,
    XML_ID,
    XSI,
    parse_instant,
    parse_xml,
    text_of,
    value_text,
)
from jitprov.protocols.saml.signature import signature_of, verify_signature
from jitprov.protocols.saml.sp import SpSettings

_RESPONSE = f"{{{SAMLP}}}Response"
_STATUS = f"{{{SAMLP}}}Status"
_STATUS_CODE = f"{{{SAMLP}}}StatusCode"
_ASSERTION = f"{{{SAML}}}Assertion"
_ENCRYPTED_ASSERTION = f"{{{SAML}}}EncryptedAssertion"
_ISSUER = f"{{{SAML}}}Issuer"
_SUBJECT = f"{{{SAML}}}Subject"
_NAME_ID = f"{{{SAML}}}NameID"
_ENCRYPTED_ID = f"{{{SAML}}}EncryptedID"
_SUBJECT_CONFIRMATION = f"{{{SAML}}}SubjectConfirmation"
_SUBJECT_CONFIRMATION_DATA = f"{{{SAML}}}SubjectConfirmationData"
_CONDITIONS = f"{{{SAML}}}Conditions"
_AUDIENCE_RESTRICTION = f"{{{SAML}}}AudienceRestriction"
_AUDIENCE = f"{{{SAML}}}Audience"
_ONE_TIME_USE = f"{{{SAML}}}OneTimeUse"
_PROXY_RESTRICTION = f"{{{SAML}}}ProxyRestriction"
_AUTHN_STATEMENT = f"{{{SAML}}}AuthnStatement"
_AUTHN_CONTEXT = f"{{{SAML}}}AuthnContext"
_AUTHN_CONTEXT_CLASS_REF = f"{{{SAML}}}AuthnContextClassRef"
_ATTRIBUTE_STATEMENT = f"{{{SAML}}}AttributeStatement"
_ATTRIBUTE = f"{{{SAML}}}Attribute"
_ATTRIBUTE_VALUE = f"{{{SAML}}}AttributeValue"
_XSI_NIL = f"{{{XSI}}}nil"

EMAIL_NAME_ID_NOTE = ("saml: the NameID is an email address (emailAddress format); email "
                      "addresses can be reassigned to another person, prefer a persistent NameID")
UNSPECIFIED_NAME_ID_NOTE = ("saml: the NameID format is unspecified; make sure the IdP sends a "
                            "stable, never-reassigned value")


@dataclass(frozen=True, slots=True)
class ValidatedAssertion:
    """A verified assertion.

    Store ``assertion_id`` until ``not_on_or_after`` (the replay cache is the service layer's):
    ``not_on_or_after`` is the last instant this assertion could still be accepted, the
    earliest of the bearer SubjectConfirmationData's and the Conditions' NotOnOrAfter plus the
    clock skew. ``in_response_to`` is the AuthnRequest ID it answers (None when IdP-initiated);
    ``name_id_format`` is the NameID's Format (``unspecified`` when absent);
    ``session_index`` is the AuthnStatement's SessionIndex, for logout.
    """

    identity: ExternalIdentity
    assertion_id: str
    not_on_or_after: datetime
    in_response_to: str | None
    name_id_format: str
    session_index: str | None
    #: the NameID's NameQualifier and SPNameQualifier as sent (a LogoutRequest repeats them)
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None


def validate_response(saml_response: str, *, sp: SpSettings, config: SamlConfig,
                      expected_in_response_to: str | None, now: datetime) -> ValidatedAssertion:
    """Validate the base64 ``SAMLResponse`` form field and return the verified assertion.

    ``expected_in_response_to`` is the ID of the AuthnRequest this browser started; None means
    an IdP-initiated (unsolicited) response, refused unless ``config.allow_idp_initiated`` (and
    then the response must carry no InResponseTo). When it is set, the Response's and the
    bearer SubjectConfirmationData's InResponseTo must both equal it (a stripped one is
    refused). ``now`` must be timezone-aware. Raises :class:`SamlError` with a stable code (see
    the module docstring for the order of the checks).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    root = _parse(saml_response, config.max_response_bytes)
    assertion_slot = _check_structure(root)

    if expected_in_response_to is None and not config.allow_idp_initiated:
        raise SamlError("unsolicited_response",
                        "IdP-initiated (unsolicited) sign-in is not enabled for this connection")
    _check_status(root)

    response_signature = signature_of(root)
    response_signed = response_signature is not None
    if response_signature is not None:
        verify_signature(response_signature, root, config.idp_certs, allow_sha1=config.allow_sha1)
        # what is read from now on comes from inside the element that was just verified
        assertion_slot = _enveloped_assertion(root, assertion_slot)
    _check_response_envelope(root, sp, config, expected_in_response_to,
                             signed=response_signed)

    if assertion_slot.tag == _ENCRYPTED_ASSERTION:
        assertion = decrypt_assertion(assertion_slot, sp.private_key_pem)
        _check_decrypted(root, assertion)
    else:
        assertion = assertion_slot

    assertion_signature = signature_of(assertion)
    if assertion_signature is not None:
        verify_signature(assertion_signature, assertion, config.idp_certs,
                         allow_sha1=config.allow_sha1)
    elif config.require_signed_assertion:
        raise SamlError("signature_missing", "the Assertion is not signed, and this connection "
                                             "requires a signed Assertion (a signed Response "
                                             "is not enough)")
    elif not response_signed:
        raise SamlError("signature_missing", "neither the Response nor the Assertion is signed")
    # From here on, only the verified Assertion element is read.
    return _read_assertion(assertion, sp, config, expected_in_response_to, now,
                           assertion_signed=assertion_signature is not None)


def _parse(saml_response: str, limit: int) -> etree._Element:
    # base64 is 4/3 of the bytes, plus line breaks some IdPs insert: 2x bounds it generously
    if len(saml_response) > 2 * limit:
        raise SamlError("too_large", "the SAML response is too large")
    try:
        data = base64.b64decode("".join(saml_response.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlError("invalid_response", "the SAMLResponse field is not base64") from None
    if len(data) > limit:
        raise SamlError("too_large", "the SAML response is too large")
    root = parse_xml(data, what="SAML response")
    if root.tag != _RESPONSE:
        raise SamlError("invalid_response", "the message is not a SAML 2.0 Response")
    if root.get("Version") != "2.0":
        raise SamlError("invalid_response", "the Response is not SAML version 2.0")
    return root


def _check_structure(root: etree._Element) -> etree._Element:
    """Refuse the shapes signature wrapping needs; return the one (Encrypted)Assertion."""
    seen: set[str] = set()
    responses = 0
    assertions: list[etree._Element] = []
    for element in root.iter():
        tag = element.tag
        if tag == _RESPONSE:
            responses += 1
        elif tag == _ASSERTION or tag == _ENCRYPTED_ASSERTION:
            assertions.append(element)
        for name in ("ID", XML_ID):
            value = element.get(name)
            if value is not None:
                if value in seen:
                    raise SamlError("signature_wrapping", "two elements share one ID")
                seen.add(value)
    if responses != 1:
        raise SamlError("signature_wrapping", "a Response is nested in the Response")
    direct = [child for child in root if child.tag in (_ASSERTION, _ENCRYPTED_ASSERTION)]
    if len(direct) > 1:
        raise SamlError("multiple_assertions",
                        "the Response carries more than one Assertion; exactly one is accepted")
    if len(assertions) != len(direct):
        raise SamlError("signature_wrapping", "an Assertion is nested where none belongs")
    if not direct:
        _check_status(root)  # an IdP's error answer carries no assertion: say what it said
        raise SamlError("invalid_response", "the Response carries no Assertion")
    try:
        xmlsec.tree.add_ids(root, ["ID"])
    except xmlsec.Error:  # a duplicate the scan above missed: refuse all the same
        raise SamlError("signature_wrapping", "two elements share one ID") from None
    return direct[0]


def _enveloped_assertion(response: etree._Element,
                         found: etree._Element) -> etree._Element:
    """The one (Encrypted)Assertion enveloped by the verified ``response``, as its direct
    child: the element its signature covers. ``found`` is what the structure check picked
    before; anything else (a second one, one moved elsewhere) is ``signature_wrapping``."""
    direct = [child for child in response if child.tag in (_ASSERTION, _ENCRYPTED_ASSERTION)]
    if len(direct) != 1 or direct[0] is not found:
        raise SamlError("signature_wrapping", "the signed Response does not envelope exactly "
                                              "one assertion")
    return direct[0]


def _check_status(root: etree._Element) -> None:
    status = root.find(_STATUS)
    code = status.find(_STATUS_CODE) if status is not None else None
    value = code.get("Value") if code is not None else None
    if value != STATUS_SUCCESS:
        second = code.find(_STATUS_CODE) if code is not None else None
        detail = value or "no status"
        if second is not None and second.get("Value"):
            detail += f" / {second.get('Value')}"
        raise SamlError("status_not_success",
                        f"the IdP did not sign you in (status {detail[:300]})")


def _check_issuer(element: etree._Element, config: SamlConfig, *, required: bool) -> None:
    issuers = [child for child in element if child.tag == _ISSUER]
    if not issuers:
        if required:
            raise SamlError("issuer_mismatch", "the Assertion has no Issuer")
        return
    issuer = issuers[0]
    fmt = issuer.get("Format")
    if (len(issuers) > 1 or text_of(issuer).strip() != config.idp_entity_id
            or fmt not in (None, NAMEID_ENTITY)):
        raise SamlError("issuer_mismatch", "the Issuer is not this connection's IdP")


def _check_response_envelope(root: etree._Element, sp: SpSettings, config: SamlConfig,
                             expected_in_response_to: str | None, *, signed: bool) -> None:
    destination = root.get("Destination")
    if destination is None and signed:
        # SAML Bindings 3.5.5.2: a signed message MUST carry a Destination
        raise SamlError("destination_mismatch", "the signed Response has no Destination")
    if destination is not None and destination != sp.acs_url:
        raise SamlError("destination_mismatch",
                        "the Response was sent to another Assertion Consumer Service URL")
    _check_issuer(root, config, required=False)
    _check_in_response_to(root.get("InResponseTo"), expected_in_response_to, "Response")


def _check_in_response_to(value: str | None, expected: str | None, where: str) -> None:
    if expected is None:
        if value is not None:
            raise SamlError("in_response_to_mismatch",
                            f"an unsolicited {where} names a request (InResponseTo)")
    elif value != expected:
        raise SamlError("in_response_to_mismatch",
                        f"the {where} does not answer the sign-in this browser started")


def _check_decrypted(root: etree._Element, assertion: etree._Element) -> None:
    """The decrypted content gets the same structural checks as the rest of the document."""
    seen: set[str] = set()
    wrapper = assertion.getparent()
    for element in root.iter():
        tag = element.tag
        if ((tag == _RESPONSE and element is not root)
                or (tag == _ASSERTION and element is not assertion)
                or (tag == _ENCRYPTED_ASSERTION and element is not wrapper)):
            raise SamlError("signature_wrapping", "an Assertion is nested where none belongs")
        for name in ("ID", XML_ID):
            value = element.get(name)
            if value is not None:
                if value in seen:
                    raise SamlError("signature_wrapping", "two elements share one ID")
                seen.add(value)
    try:
        xmlsec.tree.add_ids(assertion, ["ID"])
    except xmlsec.Error:
        raise SamlError("signature_wrapping", "two elements share one ID") from None


def _one(parent: etree._Element, tag: str, what: str, *,
         code: str = "invalid_response") -> etree._Element:
    found = [child for child in parent if child.tag == tag]
    if len(found) != 1:
        raise SamlError(code, f"the Assertion must have exactly one {what}")
    return found[0]


def _read_assertion(assertion: etree._Element, sp: SpSettings, config: SamlConfig,
                    expected_in_response_to: str | None, now: datetime, *,
                    assertion_signed: bool) -> ValidatedAssertion:
    if assertion.get("Version") != "2.0":
        raise SamlError("invalid_response", "the Assertion is not SAML version 2.0")
    assertion_id = assertion.get("ID")
    if not assertion_id:
        raise SamlError("invalid_response", "the Assertion has no ID")
    _check_issuer(assertion, config, required=True)
    skew = timedelta(seconds=config.clock_skew_seconds)

    subject = _one(assertion, _SUBJECT, "Subject")
    confirmation_until = _check_subject_confirmation(subject, sp, expected_in_response_to,
                                                     now, skew)
    conditions_until = _check_conditions(assertion, sp, now, skew)
    statements = [child for child in assertion if child.tag == _AUTHN_STATEMENT]
    if not statements:
        # Profiles 4.1.4.2: the assertion used for SSO carries an AuthnStatement
        raise SamlError("invalid_response", "the Assertion has no AuthnStatement")
    session_index = statements[0].get("SessionIndex")
    session_until = statements[0].get("SessionNotOnOrAfter")
    if session_until is not None and now - skew >= parse_instant(
            session_until, what="SessionNotOnOrAfter"):
        raise SamlError("expired", "the IdP session of this assertion has ended")

    name_id, name_id_format, notes = _read_name_id(subject, config)
    if not assertion_signed:
        notes.append("saml: the Assertion is unsigned; the Response signature covers it")
    until = min(confirmation_until, conditions_until or confirmation_until) + skew
    identity = with_auth_context(
        ExternalIdentity(issuer=config.idp_entity_id, subject=name_id,
                         claims=_read_attributes(assertion), notes=tuple(notes)),
        AuthContext.from_class_refs(_class_refs(statements)))
    return ValidatedAssertion(identity=identity, assertion_id=assertion_id,
                              not_on_or_after=until, in_response_to=expected_in_response_to,
                              name_id_format=name_id_format, session_index=session_index,
                              **_qualifiers(subject))


def _qualifiers(subject: etree._Element) -> dict[str, str | None]:
    """The NameQualifier and SPNameQualifier of the Subject's one NameID (read, not checked:
    Single Logout repeats them to the IdP)."""
    name_id = _one(subject, _NAME_ID, "NameID in its Subject")
    return {"name_qualifier": name_id.get("NameQualifier"),
            "sp_name_qualifier": name_id.get("SPNameQualifier")}


def _class_refs(statements: list[etree._Element]) -> list[str]:
    """Core 2.7.2.2: the AuthnContextClassRef of each AuthnStatement (direct children of the
    verified Assertion), in document order."""
    return [text_of(ref).strip() for statement in statements
            for context in statement if context.tag == _AUTHN_CONTEXT
            for ref in context if ref.tag == _AUTHN_CONTEXT_CLASS_REF]


def _check_subject_confirmation(subject: etree._Element, sp: SpSettings,
                                expected_in_response_to: str | None, now: datetime,
                                skew: timedelta) -> datetime:
    """Profiles 4.1.4.2-4.1.4.3: at least one bearer SubjectConfirmation whose data has
    Recipient = the ACS URL (exactly), NotOnOrAfter in the future and the request's
    InResponseTo. Returns its NotOnOrAfter; when none fits, raises the first one's error."""
    bearers = [c for c in subject
               if c.tag == _SUBJECT_CONFIRMATION and c.get("Method") == CM_BEARER]
    if not bearers:
        raise SamlError("invalid_response", "the Subject has no bearer SubjectConfirmation")
    first_error: SamlError | None = None
    for confirmation in bearers:
        try:
            return _check_bearer(confirmation, sp, expected_in_response_to, now, skew)
        except SamlError as exc:
            first_error = first_error or exc
    assert first_error is not None  # noqa: S101 - bearers is not empty
    raise first_error


def _check_bearer(confirmation: etree._Element, sp: SpSettings,
                  expected_in_response_to: str | None, now: datetime,
                  skew: timedelta) -> datetime:
    datas = [c for c in confirmation if c.tag == _SUBJECT_CONFIRMATION_DATA]
    if len(datas) != 1:
        raise SamlError("invalid_response", "the bearer SubjectConfirmation has no "
                                            "SubjectConfirmationData")
    data = datas[0]
    if data.get("Recipient") != sp.acs_url:
        raise SamlError("recipient_mismatch", "the assertion was issued for another Assertion "
                                              "Consumer Service URL (Recipient)")
    until = parse_instant(data.get("NotOnOrAfter"),
                          what="SubjectConfirmationData NotOnOrAfter")
    if now - skew >= until:
        raise SamlError("expired", "the assertion has expired (SubjectConfirmationData)")
    not_before = data.get("NotBefore")
    if not_before is not None and now + skew < parse_instant(
            not_before, what="SubjectConfirmationData NotBefore"):
        raise SamlError("not_yet_valid", "the assertion is not valid yet")
    _check_in_response_to(data.get("InResponseTo"), expected_in_response_to, "Assertion")
    return until


def _check_conditions(assertion: etree._Element, sp: SpSettings, now: datetime,
                      skew: timedelta) -> datetime | None:
    """Core 2.5.1: the time window, and every AudienceRestriction must name this SP; one is
    required. An unknown condition is refused (Core 2.5.1.1: indeterminate is not valid)."""
    found = [child for child in assertion if child.tag == _CONDITIONS]
    if len(found) != 1:
        raise SamlError("audience_mismatch", "the Assertion has no Conditions with an "
                                             "AudienceRestriction")
    conditions = found[0]
    not_before = conditions.get("NotBefore")
    if not_before is not None and now + skew < parse_instant(not_before,
                                                             what="Conditions NotBefore"):
        raise SamlError("not_yet_valid", "the assertion is not valid yet")
    not_on_or_after = conditions.get("NotOnOrAfter")
    until = (parse_instant(not_on_or_after, what="Conditions NotOnOrAfter")
             if not_on_or_after is not None else None)
    if until is not None and now - skew >= until:
        raise SamlError("expired", "the assertion has expired")
    restrictions = 0
    for condition in conditions:
        if not isinstance(condition.tag, str):
            continue
        if condition.tag == _AUDIENCE_RESTRICTION:
            restrictions += 1
            audiences = [text_of(a).strip() for a in condition if a.tag == _AUDIENCE]
            if sp.entity_id not in audiences:
                raise SamlError("audience_mismatch",
                                "the assertion was issued for another service (Audience)")
        elif condition.tag not in (_ONE_TIME_USE, _PROXY_RESTRICTION):
            raise SamlError("invalid_response", "the Assertion has a condition jitprov does "
                                                "not understand")
    if not restrictions:
        raise SamlError("audience_mismatch", "the Assertion has no AudienceRestriction")
    return until


def _read_name_id(subject: etree._Element, config: SamlConfig) -> tuple[str, str, list[str]]:
    if any(child.tag == _ENCRYPTED_ID for child in subject):
        raise SamlError("invalid_response", "an encrypted NameID is not supported; encrypt "
                                            "the whole assertion instead")
    name_id = _one(subject, _NAME_ID, "NameID in its Subject")
    value = text_of(name_id).strip()
    if not value:
        raise SamlError("invalid_response", "the NameID is empty")
    fmt = name_id.get("Format") or NAMEID_UNSPECIFIED
    notes: list[str] = []
    if fmt == NAMEID_TRANSIENT:
        raise SamlError("transient_name_id", "the IdP sent a transient NameID, which changes at "
                                             "every sign-in; configure a persistent NameID")
    if fmt == NAMEID_EMAIL:
        if not config.allow_email_name_id:
            raise SamlError("name_id_not_allowed",
                            "this connection does not accept email-address NameIDs")
        notes.append(EMAIL_NAME_ID_NOTE)
    elif fmt == NAMEID_UNSPECIFIED:
        notes.append(UNSPECIFIED_NAME_ID_NOTE)
    elif fmt != NAMEID_PERSISTENT:
        notes.append(f"saml: unusual NameID format {fmt[:200]}")
    return value, fmt, notes


def _read_attributes(assertion: etree._Element) -> dict[str, object]:
    """{Name: [values]}, and the same list under FriendlyName when there is one."""
    claims: dict[str, list[str]] = {}
    for statement in assertion:
        if statement.tag != _ATTRIBUTE_STATEMENT:
            continue
        for attribute in statement:
            if attribute.tag != _ATTRIBUTE:
                continue  # EncryptedAttribute: not supported, left out
            name = attribute.get("Name")
            if not name:
                continue
            values = [value_text(v) for v in attribute
                      if v.tag == _ATTRIBUTE_VALUE and v.get(_XSI_NIL) not in ("true", "1")]
            keys = [name]
            friendly = attribute.get("FriendlyName")
            if friendly and friendly != name:
                keys.append(friendly)
            for key in keys:
                claims.setdefault(key, []).extend(values)
    return dict(claims)
