"""A software authenticator for service and web tests: makes WebAuthn answers (attestation
``none``, ES256) the way a platform authenticator does, and can be made to misbehave
(another origin or RP ID, a counter that goes back, other backup flags).

The browser tests use Chromium's virtual authenticator instead; the protocol tests replay
answers recorded from it (tests/vectors/webauthn/)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    def __init__(self, origin: str = "http://testserver", rp_id: str = "testserver", *,
                 backup_eligible: bool = False, backup_state: bool = False) -> None:
        self.origin = origin
        self.rp_id = rp_id
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.sign_count = 0
        self.user_handle: bytes | None = None
        self.backup_eligible = backup_eligible
        self.backup_state = backup_state

    def _flags(self, extra: int) -> int:
        return (UP | UV | extra | (BE if self.backup_eligible else 0)
                | (BS if self.backup_state else 0))

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge,
                           "origin": origin or self.origin, "crossOrigin": False}).encode()

    def register(self, options: dict[str, Any], *, origin: str | None = None,
                 rp_id: str | None = None) -> dict[str, Any]:
        self.user_handle = unb64url(options["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})
        auth_data = (hashlib.sha256((rp_id or self.rp_id).encode()).digest()
                     + bytes([self._flags(AT)]) + struct.pack(">I", self.sign_count)
                     + bytes(16) + struct.pack(">H", len(self.credential_id))
                     + self.credential_id + cose)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "attestationObject": b64url(attestation),
                             "transports": ["internal"]},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}

    def authenticate(self, options: dict[str, Any], *, origin: str | None = None,
                     rp_id: str | None = None, sign_count: int | None = None,
                     user_handle: bytes | None = None) -> dict[str, Any]:
        self.sign_count = self.sign_count + 1 if sign_count is None else sign_count
        auth_data = (hashlib.sha256((rp_id or self.rp_id).encode()).digest()
                     + bytes([self._flags(0)]) + struct.pack(">I", self.sign_count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        handle = user_handle or self.user_handle
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
                "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature),
                             "userHandle": b64url(handle) if handle else None},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}
