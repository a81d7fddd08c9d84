"""SAML 2.0 Service Provider, Web Browser SSO profile (connection kind ``saml``).

Specifications implemented:
- SAML 2.0 Core (https://docs.oasis-open.org/security/saml/v2.0/saml-core-2.0-os.pdf):
  Response/Assertion processing (2.3.3, 2.5.1 Conditions, 2.5.1.4 AudienceRestriction,
  3.2.2 Status, 3.4.1 AuthnRequest), signatures (5), encrypted assertions (6).
- SAML 2.0 Profiles, Web Browser SSO (4.1.4.2 and 4.1.4.3: bearer SubjectConfirmation,
  Recipient, NotOnOrAfter, InResponseTo, AudienceRestriction; 4.1.5 unsolicited responses).
- SAML 2.0 Bindings: HTTP-Redirect for the AuthnRequest (3.4, signed per 3.4.4.1),
  HTTP-POST for the Response (3.5).
- SAML 2.0 Metadata (2.4.3 IDPSSODescriptor, 2.4.4 SPSSODescriptor).
- SAML 2.0 Profiles 4.4, Single Logout (Core 3.7 LogoutRequest/LogoutResponse) over
  HTTP-Redirect and HTTP-POST, both ways: ``logout.py``.

Signatures are verified by libxmlsec1 in process (python-xmlsec) against the pinned IdP
certificates only: a key or certificate inside the message (``KeyInfo``) is never used. Only
the element the verified signature references is read afterwards (signature wrapping, XSW 1-8).
XML is parsed with lxml, no DTD (a DOCTYPE is refused outright), no entities, no network.

Decisions where the specifications leave a choice (each enforced by a test):
- A signed Response that envelopes exactly one assertion is enough by default (SAML Core 5.2;
  Keycloak's default, an ADFS/Shibboleth/Entra option): its one Reference is the Response's
  own ID, so it covers the assertion, which is then taken from inside the verified Response,
  and ``identity.notes`` says the assertion was unsigned. ``require_signed_assertion`` demands
  the Assertion's own signature as well. Both signed is accepted; a present signature that does
  not verify is always refused, even if the other one verifies.
- Every AuthnRequest is signed with the connection's SP key by default, and the SP metadata
  says ``AuthnRequestsSigned="true"``: what the metadata promises is what the SP sends,
  whatever the IdP's ``WantAuthnRequestsSigned``. ``sign_authn_requests: false`` signs only
  when the IdP's metadata asks, and the SP metadata then says ``"false"``.
- Canonicalisation: exclusive c14n, c14n 1.0 and 1.1, all *without* comments;
  ``#WithComments`` variants are refused. Transforms: enveloped-signature plus those.
  Signatures: rsa-sha256/384/512 and ecdsa-sha256/384/512; digests sha256/384/512. SHA-1 only
  with ``allow_sha1``. xmlsec is given the same allowlists as a second line.
- When ``expected_in_response_to`` is set, the Response's InResponseTo AND the bearer
  SubjectConfirmationData's must equal it (Profiles 4.1.4.2 makes the latter a MUST).
- More than one Assertion/EncryptedAssertion is ``multiple_assertions``; an Assertion or a
  Response anywhere else (Extensions, a Signature's Object, Advice, nested) is
  ``signature_wrapping``. Assertions in ``Advice`` are therefore refused.
- Encrypted: RSA-OAEP key transport only (PKCS#1 v1.5 refused), AES-CBC/GCM content; an
  encrypted assertion still needs a signature (encryption to the SP's public certificate
  proves nothing about the sender). EncryptedID and EncryptedAttribute are not supported.
- A bearer SubjectConfirmation is chosen among several if any one passes; AuthnStatement is
  required (Profiles 4.1.4.2), its SessionNotOnOrAfter enforced; unknown Conditions refused.
- Not checked: IssueInstant freshness (Conditions and SubjectConfirmationData bound the
  window), the IdP metadata's own signature (fetch it over https), SPNameQualifier.

This package never touches the database, the clock or the network: the caller passes ``now``
and stores the replay cache (``ValidatedAssertion.assertion_id`` until ``not_on_or_after``).
"""

from jitprov.protocols.saml.authn_request import AuthnRequest, build_authn_request
from jitprov.protocols.saml.config import SamlConfig, SamlKind
from jitprov.protocols.saml.errors import SamlError
from jitprov.protocols.saml.metadata import IdpMetadata, build_sp_metadata, parse_idp_metadata
from jitprov.protocols.saml.response import ValidatedAssertion, validate_response
from jitprov.protocols.saml.sp import SpSettings, generate_sp_keypair, sp_settings

__all__ = [
    "AuthnRequest",
    "IdpMetadata",
    "SamlConfig",
    "SamlError",
    "SamlKind",
    "SpSettings",
    "ValidatedAssertion",
    "build_authn_request",
    "build_sp_metadata",
    "generate_sp_keypair",
    "parse_idp_metadata",
    "sp_settings",
    "validate_response",
]
