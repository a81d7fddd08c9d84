"""The claims a login leaves behind for the mapping editor: a copy with the secrets taken out.

Each identity keeps the claims of its most recent login (``identity.claims``), so an admin can
test a mapping against real logins and preview what a change would do to real people. Those
claims must never hold a credential. :func:`redact_claims` replaces the value of

* every key named in :data:`SECRET_KEYS` (compared case-insensitively, ``-`` read as ``_``):
  OAuth/OIDC tokens and their hashes (``access_token``, ``id_token``, ``refresh_token``,
  ``code``, ``code_verifier``, ``state``, ``nonce``, ``at_hash``, ``c_hash``, ``s_hash``), SAML
  messages (``SAMLResponse``, ``SAMLRequest``, ``assertion``, ``RelayState``), client
  credentials (``client_secret``, ``client_assertion``), one-time codes (``otp``);
* every key containing one of :data:`SECRET_KEY_PARTS` (``password``, ``passwd``, ``secret``,
  ``token``, ``private_key``, ``api_key``, ``apikey``, ``credential``, ``assertion``,
  ``cookie``, ``session``, ``signature``);
* every string value that looks like a credential whatever its key: a JWT or JWE (dot-separated
  base64url segments starting with ``eyJ``), an XML document holding a SAML ``Assertion`` or a
  ``Signature``, a PEM block (``-----BEGIN``);

with the string :data:`REDACTED`, at any depth (nested objects and lists). The key stays, so a
mapping that tests for its presence behaves the same on recorded claims. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

REDACTED = "[redacted]"

SECRET_KEYS = frozenset({
    "access_token", "id_token", "refresh_token", "code", "code_verifier", "state", "nonce",
    "at_hash", "c_hash", "s_hash", "samlresponse", "samlrequest", "saml_response",
    "saml_request", "assertion", "relaystate", "client_secret", "client_assertion", "otp",
})
SECRET_KEY_PARTS = ("password", "passwd", "secret", "token", "private_key", "api_key",
                    "apikey", "credential", "assertion", "cookie", "session", "signature")

MAX_DEPTH = 32  # deeper values are dropped (claims deeper than this are no one's profile)

_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*$")
_XML_SECRET = re.compile(r"Assertion|Signature|EncryptedData", re.IGNORECASE)


@lru_cache(maxsize=4096)  # claim names repeat from login to login
def is_secret_key(key: str) -> bool:
    """Whether the value of a claim named ``key`` is redacted, whatever it is."""
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or any(part in name for part in SECRET_KEY_PARTS)


def is_secret_value(value: str) -> bool:
    """Whether a string looks like a credential: a JWT/JWE, a signed or SAML XML document, a
    PEM block."""
    text = value.lstrip()
    if text.startswith("eyJ") and _JWT.match(text) is not None:
        return True
    if text.startswith("<") and _XML_SECRET.search(text) is not None:
        return True
    return text.startswith("-----BEGIN")


def redact_claims(claims: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``claims`` with every secret replaced by :data:`REDACTED` (see the module
    docstring for what counts as a secret). Never raises; keys are made strings."""
    return {str(key): REDACTED if is_secret_key(str(key)) else _redact(value, 1)
            for key, value in claims.items()}


def _redact(value: object, depth: int) -> object:
    if isinstance(value, str):
        return REDACTED if value and value[0] in "e<- \t\n" and is_secret_value(value) \
            else value
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return None
        return {str(k): REDACTED if is_secret_key(str(k)) else _redact(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return None
        return [_redact(item, depth + 1) for item in value]
    return value
