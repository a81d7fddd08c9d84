"""The one error of the SAML adapter: a stable code and a sentence for the error page."""

from __future__ import annotations

from jitprov.core.errors import InvalidInput

#: Every code :class:`SamlError` may carry (stable: the web layer, the audit log and the
#: tests key on them).
CODES = frozenset({
    "invalid_response",         # not base64, not XML, not a SAML Response, or malformed
    "too_large",                # over ``max_response_bytes`` (before or after base64 decoding)
    "xml_forbidden",            # a DOCTYPE/DTD, entities, processing we refuse
    "signature_missing",        # no signature where one is required
    "signature_invalid",        # the DSig does not verify against a pinned certificate
    "algorithm_forbidden",      # SHA-1, XSLT/XPath transforms, RSA 1.5 key transport, unknown
    "signature_wrapping",       # Reference not the enveloping element's ID, duplicate IDs,
                                # nested Response or Assertion
    "multiple_assertions",      # more than one (Encrypted)Assertion in the Response
    "decryption_failed",        # an EncryptedAssertion the SP key cannot open
    "status_not_success",
    "destination_mismatch",
    "recipient_mismatch",
    "audience_mismatch",
    "issuer_mismatch",
    "expired",
    "not_yet_valid",
    "unsolicited_response",
    "in_response_to_mismatch",
    "transient_name_id",
    "name_id_not_allowed",      # emailAddress refused by config, or no usable NameID
    "invalid_metadata",
    "message_replayed",         # a logout message whose ID was already accepted
})


class SamlError(InvalidInput):
    """A SAML message, or IdP metadata, that cannot be accepted.

    ``code`` is stable (see :data:`CODES`); the message is one readable sentence that never
    carries the assertion, a key or a token.
    """

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
