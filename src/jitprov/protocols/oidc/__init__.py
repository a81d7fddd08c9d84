"""OpenID Connect relying party (connection kind ``oidc``).

Specifications implemented:
- OpenID Connect Core 1.0 (https://openid.net/specs/openid-connect-core-1_0.html): the
  authorization code flow (section 3.1), ID token validation (3.1.3.7), nonce (3.1.2.1,
  15.5.2), UserInfo (5.3; its ``sub`` must equal the ID token's, 5.3.2), client authentication
  (9: ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt``).
- OpenID Connect Discovery 1.0 (section 4): provider metadata, cached with a TTL; the JWKS is
  cached and re-fetched on an unknown ``kid`` at most once per interval.
- RFC 7636 (PKCE), ``S256`` only; RFC 9207 (``iss`` in the authorization response).
- OpenID Connect RP-Initiated Logout 1.0
  (https://openid.net/specs/openid-connect-rpinitiated-1_0.html): the logout request
  (section 2) with ``id_token_hint``, ``client_id``, ``post_logout_redirect_uri``, ``state``.
- OpenID Connect Back-Channel Logout 1.0
  (https://openid.net/specs/openid-connect-backchannel-1_0.html): the logout token (2.4),
  its validation (2.6; ``jti`` single use through the caller's replay cache), the ``sid``
  claim of ID tokens (2.1) recorded at login.

JOSE is joserfc's: keys come only from the provider's JWKS (``jku``, ``x5u`` and ``jwk``
headers are never followed), algorithms from an allowlist of asymmetric ones (never ``none``,
never HMAC). Outbound HTTP goes through an injected ``httpx.Client`` (or its
``httpx.AsyncClient`` twin: the code exchange and userinfo are requests built here and sent
by the caller, see ``token_request``).
"""

from jitprov.protocols.oidc.config import OidcConfig, OidcKind
from jitprov.protocols.oidc.errors import OidcError
from jitprov.protocols.oidc.flow import (
    AuthorizationRequest,
    build_authorization_request,
    check_response_issuer,
    exchange_code,
    fetch_userinfo,
    identity_from_claims,
    read_token_response,
    read_userinfo,
    token_request,
    userinfo_request,
    validate_id_token,
)
from jitprov.protocols.oidc.logout import (
    BACKCHANNEL_LOGOUT_EVENT,
    LogoutToken,
    build_end_session_url,
    precheck_logout_token,
    validate_logout_token,
)
from jitprov.protocols.oidc.provider import (
    KeysNotInMemory,
    ProviderMetadata,
    Providers,
    send,
    send_async,
)
from jitprov.protocols.oidc.scopes import ScopeWarning, check_scopes

__all__ = [
    "BACKCHANNEL_LOGOUT_EVENT",
    "AuthorizationRequest",
    "KeysNotInMemory",
    "LogoutToken",
    "OidcConfig",
    "OidcError",
    "OidcKind",
    "ProviderMetadata",
    "Providers",
    "ScopeWarning",
    "build_authorization_request",
    "build_end_session_url",
    "check_response_issuer",
    "check_scopes",
    "exchange_code",
    "fetch_userinfo",
    "identity_from_claims",
    "precheck_logout_token",
    "read_token_response",
    "read_userinfo",
    "send",
    "send_async",
    "token_request",
    "userinfo_request",
    "validate_id_token",
    "validate_logout_token",
]
