"""Secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256), with key rotation.

Each configured secret key gives one Fernet key (SHA-256 of a label and the key). Values are
sealed with the newest key and opened with any of them (``cryptography``'s MultiFernet), so a
rotation is: list the new key first in ``JITPROV_SECRET_KEYS``, restart, run
``jitprov secrets rotate`` (which re-seals every stored value with the newest key), then drop
the old key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from jitprov.core.errors import JitprovError


class SecretsUnreadable(JitprovError):
    code = "secrets_unreadable"


def _fernet(secret_key: str) -> Fernet:
    derived = hashlib.sha256(b"jitprov connection secrets\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts JSON objects of secrets under the newest key; opens them under any key."""

    def __init__(self, secret_key: str, previous_keys: Sequence[str] = ()) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to encrypt connection secrets")
        self._newest = _fernet(secret_key)
        self._all = MultiFernet([self._newest, *(_fernet(key) for key in previous_keys)])

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, secrets: Mapping[str, str]) -> str:
        return self._newest.encrypt(json.dumps(dict(secrets)).encode()).decode()

    def open(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            value = json.loads(self._all.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretsUnreadable("connection secrets cannot be decrypted: "
                                    "JITPROV_SECRET_KEY differs from the one that sealed them"
                                    ) from exc
        return {str(k): str(v) for k, v in value.items()}

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is sealed with the newest key (nothing to rotate)."""
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str:
        """``token`` sealed again with the newest key; :class:`SecretsUnreadable` when no
        configured key opens it."""
        try:
            return self._all.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretsUnreadable("a stored secret cannot be decrypted with any configured "
                                    "key") from exc
