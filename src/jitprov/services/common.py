"""What several services share: how secrets are stored (by digest) and the refusal of a
sign-in (SSO, passkey, break-glass code), so that no service reaches into a sibling for them.
"""

from __future__ import annotations

import hashlib

from jitprov.core.errors import JitprovError

#: refusals caused by the request itself (HTTP 400) rather than by policy (HTTP 403)
REQUEST_PROBLEMS = frozenset({"login_expired", "login_foreign", "invalid_identity",
                              "break_glass_refused", "replay"})


def hash_token(token: str) -> str:
    """Sessions, states and tokens are stored by SHA-256 of their value, never the value."""
    return hashlib.sha256(token.encode()).hexdigest()


class LoginRefused(JitprovError):
    """The login ended without a session. ``code`` is stable; ``reason`` is for the user;
    ``status`` is the HTTP status that fits it."""

    code = "login_refused"

    def __init__(self, code: str, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.request_id = request_id
        self.status = 400 if code in REQUEST_PROBLEMS else 403

    def __reduce__(self) -> tuple[type[LoginRefused], tuple[str, str, str | None]]:
        return (LoginRefused, (self.code, self.reason, self.request_id))  # picklable
