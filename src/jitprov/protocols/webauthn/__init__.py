"""WebAuthn relying party: passkeys and security keys (a thin wrapper over py_webauthn 3.x).

Specification implemented: W3C Web Authentication Level 3
(https://www.w3.org/TR/webauthn-3/):
- §5.4 credential creation options: discoverable credentials (``residentKey: required``),
  user verification required, ``attestation: none`` (we trust the account, not the maker),
  ``excludeCredentials`` so one authenticator is enrolled once per account.
- §7.1 registering a new credential and §7.2 verifying an authentication assertion, by
  py_webauthn: type, challenge, origin, RP ID hash (§6.1), user presence and verification
  (§6.1 flags UP/UV), the signature, and the signature counter (§6.1.1: a counter that does not
  move forward is refused, a clone warning).
- §6.1.3 backup flags: BE (backup eligibility) is fixed for a credential's lifetime, so a
  change is refused; BS (backup state) is recorded.
- §7.2 step 6: the ``userHandle`` of a discoverable credential must name the account the
  credential is bound to.
- §13.4.3 challenges: 32 random bytes, single use; the caller keeps them server-side.

Only wire format and verification live here; the challenge store and accounts are the
service's (``services/passkeys.py``). Nothing here touches the database.
"""

from jitprov.protocols.webauthn.ceremony import (
    Assertion,
    RegisteredCredential,
    RelyingParty,
    WebAuthnError,
    authentication_options,
    client_challenge,
    credential_id_of,
    new_challenge,
    registration_options,
    user_handle_of,
    verify_authentication,
    verify_registration,
)

__all__ = [
    "Assertion",
    "RegisteredCredential",
    "RelyingParty",
    "WebAuthnError",
    "authentication_options",
    "client_challenge",
    "credential_id_of",
    "new_challenge",
    "registration_options",
    "user_handle_of",
    "verify_authentication",
    "verify_registration",
]
