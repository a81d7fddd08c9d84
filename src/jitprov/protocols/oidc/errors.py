"""The one error of the OIDC adapter: a stable code and a sentence for the error page."""

from __future__ import annotations

from jitprov.core.errors import InvalidInput


class OidcError(InvalidInput):
    """A login response, token or provider answer that cannot be accepted.

    ``code`` is stable (``id_token_invalid``, ``nonce_mismatch``, ``idp_error``...);
    the message never carries a token, code or secret.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
