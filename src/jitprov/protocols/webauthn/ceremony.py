"""Options and verification of the two WebAuthn ceremonies (see the package docstring)."""

from __future__ import annotations

import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import webauthn
from webauthn.helpers import bytes_to_base64url, options_to_json_dict
from webauthn.helpers.exceptions import InvalidBackupFlags, WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from jitprov.core.errors import JitprovError

CHALLENGE_BYTES = 32
TIMEOUT_MS = 120_000
LOOPBACK_IPS = frozenset({"127.0.0.1", "::1"})
MAX_CREDENTIAL_ID = 1023  # bytes (§5.8.3: credential IDs are at most 1023 bytes)

#: py_webauthn's messages -> our stable codes (the tests and the audit log rely on the codes)
_CODES = (
    ("origin", "wrong_origin"),
    ("challenge", "wrong_challenge"),
    ("RP ID hash", "wrong_rp_id"),
    ("sign count", "counter_regression"),
    ("signature", "bad_signature"),
    ("verif", "user_not_verified"),
    ("present", "user_not_present"),
)


class WebAuthnError(JitprovError):
    """A WebAuthn response that does not verify. ``code`` says why (``wrong_origin``,
    ``wrong_challenge``, ``wrong_rp_id``, ``counter_regression``, ``backup_flags``,
    ``bad_signature``, ``user_not_verified``, ``invalid_response``)."""

    code = "webauthn_invalid"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Our side: the RP ID is the host of the public base URL, the origin is the base URL's
    scheme, host and port (§5.1.3: ``rp.id`` is a registrable domain suffix of the origin)."""

    id: str
    name: str
    origin: str

    @classmethod
    def from_base_url(cls, base_url: str, name: str = "jitprov") -> RelyingParty:
        parts = urlsplit(base_url)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"not an absolute URL: {base_url!r}")
        if parts.hostname in LOOPBACK_IPS:
            # an IP address is not a valid RP ID (§5.1.3 needs a domain), but localhost is,
            # and is a secure context over http: a loopback base URL means localhost
            port = f":{parts.port}" if parts.port else ""
            return cls(id="localhost", name=name, origin=f"{parts.scheme}://localhost{port}")
        return cls(id=parts.hostname, name=name, origin=f"{parts.scheme}://{parts.netloc}")


@dataclass(frozen=True, slots=True)
class RegisteredCredential:
    credential_id: str  # base64url
    public_key: bytes  # COSE_Key
    sign_count: int
    aaguid: str
    backup_eligible: bool
    backup_state: bool
    transports: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Assertion:
    credential_id: str
    sign_count: int
    backup_state: bool


def new_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def registration_options(rp: RelyingParty, *, user_id: bytes, user_name: str,
                         display_name: str, challenge: bytes,
                         exclude: Sequence[str] = ()) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON (WebAuthn L3 ``toJSON`` form)."""
    options = webauthn.generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_id=user_id, user_name=user_name,
        user_display_name=display_name, challenge=challenge, timeout=TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=_b64decode(c))
                             for c in exclude])
    return dict(options_to_json_dict(options))


def authentication_options(rp: RelyingParty, *, challenge: bytes) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` for a username-less sign-in: no
    ``allowCredentials``, so the authenticator offers its discoverable credentials (§5.4.4)."""
    options = webauthn.generate_authentication_options(
        rp_id=rp.id, challenge=challenge, timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.REQUIRED)
    return dict(options_to_json_dict(options))


def client_challenge(credential: Mapping[str, Any]) -> bytes:
    """The challenge the browser signed (from ``clientDataJSON``), to find the server-side
    record. Nothing is verified yet. Raises WebAuthnError."""
    try:
        client_data = json.loads(_b64decode(str(credential["response"]["clientDataJSON"])))
        return _b64decode(str(client_data["challenge"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise WebAuthnError("invalid_response", "the WebAuthn response is malformed") from exc


def credential_id_of(credential: Mapping[str, Any]) -> str:
    """The credential id (base64url, normalised) of a response. Raises WebAuthnError."""
    try:
        raw = _b64decode(str(credential["rawId"]))
    except (KeyError, ValueError) as exc:
        raise WebAuthnError("invalid_response", "the WebAuthn response has no id") from exc
    if not raw or len(raw) > MAX_CREDENTIAL_ID:
        raise WebAuthnError("invalid_response", "the credential id has an invalid length")
    return bytes_to_base64url(raw)


def user_handle_of(credential: Mapping[str, Any]) -> bytes | None:
    """The ``userHandle`` of an assertion (always present for discoverable credentials)."""
    try:
        value = credential["response"].get("userHandle")
        return _b64decode(str(value)) if value else None
    except (AttributeError, KeyError, ValueError) as exc:
        raise WebAuthnError("invalid_response", "the userHandle is malformed") from exc


def verify_registration(rp: RelyingParty, credential: Mapping[str, Any], *,
                        challenge: bytes) -> RegisteredCredential:
    """§7.1, attestation ``none`` accepted (self-attestation and others are verified by the
    library when sent). Raises WebAuthnError."""
    try:
        verified = webauthn.verify_registration_response(
            credential=dict(credential), expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, require_user_verification=True)
    except WebAuthnException as exc:
        raise _error(exc) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise WebAuthnError("invalid_response", "the WebAuthn response is malformed") from exc
    transports = credential.get("response", {}).get("transports") or []
    return RegisteredCredential(
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key, sign_count=verified.sign_count,
        aaguid=str(verified.aaguid),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backup_state=verified.credential_backed_up,
        transports=tuple(str(x)[:32] for x in transports if isinstance(x, str))[:8])


def verify_authentication(rp: RelyingParty, credential: Mapping[str, Any], *, challenge: bytes,
                          public_key: bytes, sign_count: int,
                          backup_eligible: bool) -> Assertion:
    """§7.2 for a stored credential. Raises WebAuthnError (``counter_regression`` when the
    counter did not move forward, ``backup_flags`` when BE changed)."""
    try:
        verified = webauthn.verify_authentication_response(
            credential=dict(credential), expected_challenge=challenge, expected_rp_id=rp.id,
            expected_origin=rp.origin, credential_public_key=public_key,
            credential_current_sign_count=sign_count, require_user_verification=True)
    except WebAuthnException as exc:
        raise _error(exc) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise WebAuthnError("invalid_response", "the WebAuthn response is malformed") from exc
    eligible = verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    if eligible != backup_eligible:  # §6.1.3: BE never changes for a credential
        raise WebAuthnError("backup_flags", "the credential's backup eligibility changed")
    return Assertion(credential_id=bytes_to_base64url(verified.credential_id),
                     sign_count=verified.new_sign_count,
                     backup_state=verified.credential_backed_up)


def _error(exc: Exception) -> WebAuthnError:
    message = str(exc)
    if isinstance(exc, InvalidBackupFlags):
        return WebAuthnError("backup_flags", message)
    code = next((c for needle, c in _CODES if needle in message), "invalid_response")
    return WebAuthnError(code, message)


def _b64decode(value: str) -> bytes:
    try:
        return webauthn.base64url_to_bytes(value)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
