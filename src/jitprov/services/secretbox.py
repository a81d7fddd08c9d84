"""Connection secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken

from jitprov.core.errors import JitprovError


class SecretsUnreadable(JitprovError):
    code = "secrets_unreadable"


class SecretBox:
    """Encrypts JSON objects of secrets with a key derived from the process secret key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("a secret key is required to encrypt connection secrets")
        derived = hashlib.sha256(b"jitprov connection secrets\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, secrets: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(secrets)).encode()).decode()

    def open(self, token: str | None) -> dict[str, str]:
        if not token:
            return {}
        try:
            value = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretsUnreadable("connection secrets cannot be decrypted: "
                                    "JITPROV_SECRET_KEY differs from the one that sealed them"
                                    ) from exc
        return {str(k): str(v) for k, v in value.items()}
