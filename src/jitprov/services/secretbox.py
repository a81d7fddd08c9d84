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


#: the label of the Fernet keys that seal connection secrets (and the session's logout data)
SECRETS_LABEL = "jitprov connection secrets"


def _fernet(secret_key: str, label: str = SECRETS_LABEL) -> Fernet:
    derived = hashlib.sha256(label.encode() + b"\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


class SecretBox:
    """Encrypts JSON objects of secrets under the newest key; opens them under any key."""

    def __init__(self, secret_key: str, previous_keys: Sequence[str] = (), *,
                 label: str = SECRETS_LABEL) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to encrypt connection secrets")
        self._keys = (secret_key, *previous_keys)
        self._newest = _fernet(secret_key, label)
        self._all = MultiFernet([self._newest, *(_fernet(key, label) for key in previous_keys)])
        self._derived: dict[str, SecretBox] = {}

    def derive(self, label: str) -> SecretBox:
        """A box with the same configured keys under another label: what it seals, no box
        of another label opens (a value sealed for one purpose is never taken for another).
        Built once per label."""
        box = self._derived.get(label)
        if box is None:
            box = self._derived[label] = SecretBox(self._keys[0], self._keys[1:], label=label)
        return box

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
