"""The authorization code flow, step by step: pure functions plus an injected HTTP client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus, urlencode

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey

from jitprov.core.auth_context import AuthContext, MfaRequirement, with_auth_context
from jitprov.core.identity import ExternalIdentity
from jitprov.protocols.oidc.config import TENANT_ID, OidcConfig
from jitprov.protocols.oidc.errors import OidcError
from jitprov.protocols.oidc.provider import (
    KeysNotInMemory,
    ProviderMetadata,
    Providers,
    json_request,
    parse_json,
    read_json,
    send,
)

#: Claims that describe the token, not the person: kept out of the mapping's claims.
TOKEN_CLAIMS = frozenset({"iss", "aud", "azp", "exp", "iat", "nbf", "nonce", "at_hash",
                          "c_hash", "auth_time", "jti", "sid", "s_hash", "uti", "rh"})
MAX_TOKEN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """Where to send the browser, and what to keep server-side until the callback."""

    url: str
    nonce: str
    code_verifier: str

    def __repr__(self) -> str:  # the nonce and verifier never reach a log
        return "AuthorizationRequest(<hidden>)"


def code_challenge(verifier: str) -> str:
    """RFC 7636 section 4.2, S256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_authorization_request(metadata: ProviderMetadata, config: OidcConfig, *,
                                state: str, redirect_uri: str,
                                login_hint: str | None = None) -> AuthorizationRequest:
    """Authorization code request with PKCE (S256), ``state`` and ``nonce`` (Core 3.1.2.1),
    and ``login_hint`` when given (the address home-realm discovery was given: the provider
    may pre-fill its sign-in form with it). With ``require_mfa``, ``acr_values`` lists the
    accepted values that are not amr names (``core/auth_context.py``), in the order given;
    the answer is checked whatever the provider made of the request."""
    if metadata.code_challenge_methods and "S256" not in metadata.code_challenge_methods:
        raise OidcError("discovery_invalid", "the provider does not support PKCE S256")
    nonce = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43-128
    mfa = MfaRequirement.of({"require_mfa": config.require_mfa,
                             "accepted_auth_contexts": config.accepted_auth_contexts})
    acr_values = " ".join(mfa.requested()) if mfa is not None else ""
    query = urlencode({"response_type": "code", "client_id": config.client_id,
                       "redirect_uri": redirect_uri, "scope": " ".join(config.scopes),
                       "state": state, "nonce": nonce,
                       "code_challenge": code_challenge(verifier),
                       "code_challenge_method": "S256",
                       **({"login_hint": login_hint} if login_hint else {}),
                       **({"acr_values": acr_values} if acr_values else {})})
    separator = "&" if "?" in metadata.authorization_endpoint else "?"
    return AuthorizationRequest(f"{metadata.authorization_endpoint}{separator}{query}", nonce,
                                verifier)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    id_token: str
    access_token: str | None

    def __repr__(self) -> str:  # tokens never reach a log
        return "TokenResponse(<tokens hidden>)"


def exchange_code(http: httpx.Client, metadata: ProviderMetadata, config: OidcConfig, *,
                  code: str, code_verifier: str, redirect_uri: str,
                  client_secret: str | None = None, private_key: ECKey | None = None,
                  now: float | None = None) -> TokenResponse:
    """Redeem the code at the token endpoint (Core 3.1.3), authenticated as configured."""
    request = token_request(http, metadata, config, code=code, code_verifier=code_verifier,
                            redirect_uri=redirect_uri, client_secret=client_secret,
                            private_key=private_key, now=now)
    return read_token_response(*send(http, request, what="token endpoint"))


def token_request(http: httpx.Client | httpx.AsyncClient, metadata: ProviderMetadata,
                  config: OidcConfig, *, code: str, code_verifier: str, redirect_uri: str,
                  client_secret: str | None = None, private_key: ECKey | None = None,
                  now: float | None = None) -> httpx.Request:
    """The token request of :func:`exchange_code`, for ``http`` to send."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier}
    auth: httpx.BasicAuth | None = None
    method = config.token_auth_method
    if method == "client_secret_basic":
        # RFC 6749 section 2.3.1: form-urlencode the id and secret before Basic.
        auth = httpx.BasicAuth(_form_encode(config.client_id), _form_encode(client_secret or ""))
    elif method == "client_secret_post":
        form.update(client_id=config.client_id, client_secret=client_secret or "")
    else:
        if private_key is None:
            raise OidcError("misconfigured", "private_key_jwt needs the connection's key")
        form.update(client_id=config.client_id,
                    client_assertion_type="urn:ietf:params:oauth:client-assertion-type:"
                                          "jwt-bearer",
                    client_assertion=client_assertion(config.client_id, metadata,
                                                      private_key, now=now))
    try:
        request = http.build_request("POST", metadata.token_endpoint, data=form,
                                     headers={"Accept": "application/json"})
    except (httpx.InvalidURL, ValueError) as exc:
        raise OidcError("idp_bad_response", "the token endpoint URL is not valid") from exc
    if auth is not None:
        request = next(auth.auth_flow(request))
    return request


def read_token_response(status: int, raw: bytes) -> TokenResponse:
    """The tokens of the token endpoint's answer. Raises OidcError."""
    body = parse_json(raw, what="token response")
    if not isinstance(body, dict):
        raise OidcError("idp_bad_response", f"the token endpoint answered HTTP {status} "
                        "without a JSON object")
    if status != 200:
        error = str(body.get("error", f"HTTP {status}"))[:100]
        detail = " (the client id or secret is wrong)" if error == "invalid_client" else ""
        raise OidcError("token_error", f"the provider refused the code exchange: {error}"
                        f"{detail}")
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise OidcError("token_error", "the token response has no id_token")
    access = body.get("access_token")
    return TokenResponse(id_token, access if isinstance(access, str) else None)


def _form_encode(value: str) -> str:
    return quote_plus(value)


def client_assertion(client_id: str, metadata: ProviderMetadata, key: ECKey, *,
                     now: float | None = None) -> str:
    """RFC 7523 section 3 client assertion for ``private_key_jwt``, signed ES256."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": client_id, "sub": client_id, "aud": metadata.token_endpoint,
              "jti": uuid.uuid4().hex, "iat": issued, "exp": issued + 60}
    header = {"alg": "ES256", "kid": key.kid} if key.kid else {"alg": "ES256"}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def validate_id_token(token: str, providers: Providers, metadata: ProviderMetadata,
                      config: OidcConfig, *, nonce: str, now: float | None = None,
                      fetch: bool = True) -> dict[str, object]:
    """Verify an ID token (Core 3.1.3.7) and return its claims. Raises OidcError, or
    KeysNotInMemory without ``fetch`` (see :func:`verify_signed_token`)."""
    _header, claims = verify_signed_token(token, providers, metadata, config,
                                          code="id_token_invalid", what="ID token",
                                          fetch=fetch)
    _check_claims(claims, config, nonce=nonce, now=time.time() if now is None else now)
    return claims


def verify_signed_token(token: str, providers: Providers, metadata: ProviderMetadata,
                        config: OidcConfig, *, code: str, what: str, fetch: bool = True
                        ) -> tuple[dict[str, object], dict[str, object]]:
    """(header, claims) of a JWS the provider signed (an ID token, a logout token), once its
    signature verifies with a key of the provider's JWKS and an allowed algorithm (the JWKS
    is re-fetched once on an unknown ``kid``, rate-limited). Checks no claim. Raises
    OidcError with ``code``; without ``fetch``, KeysNotInMemory where the JWKS would be
    fetched (the caller must not wait on the network)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise OidcError(code, f"the {what} is too large")
    keys = (providers.keys(metadata.jwks_uri) if fetch
            else providers.keys_in_memory(metadata.jwks_uri))
    try:
        try:
            decoded = jwt.decode(token, keys, algorithms=list(config.id_token_algs))
        except InvalidKeyIdError:
            if not fetch:
                raise KeysNotInMemory(metadata.jwks_uri) from None
            fresh = providers.refresh_keys(metadata.jwks_uri,
                                           interval=config.jwks_refresh_interval_seconds)
            if fresh is None:
                raise
            decoded = jwt.decode(token, fresh, algorithms=list(config.id_token_algs))
    except InvalidKeyIdError as exc:
        raise OidcError(code, f"the {what} is signed with a key the provider does not "
                        "publish") from exc
    except (JoseError, ValueError) as exc:
        raise OidcError(code, f"the {what} does not verify: "
                        f"{getattr(exc, 'error', type(exc).__name__)}") from exc
    return dict(decoded.header), dict(decoded.claims)


def expected_issuer(claims: Mapping[str, object], config: OidcConfig, *, code: str) -> str:
    """The issuer a token of this connection must name: the configured one, or for Entra's
    multi-tenant template the one of the token's (allowed) ``tid``. Raises OidcError."""
    if not config.entra_multi_tenant:
        return config.issuer
    tid = claims.get("tid")
    if not isinstance(tid, str) or not TENANT_ID.match(tid):
        raise OidcError(code, "the token has no valid tid claim (Entra)")
    if config.entra_allowed_tenants and tid not in config.entra_allowed_tenants:
        raise OidcError("tenant_not_allowed", "your Entra ID tenant is not allowed to "
                        "sign in here")
    return config.issuer.replace("{tenantid}", tid)


def _check_claims(claims: dict[str, object], config: OidcConfig, *, nonce: str,
                  now: float) -> None:
    skew = config.clock_skew_seconds
    if claims.get("iss") != expected_issuer(claims, config, code="id_token_invalid"):
        raise OidcError("id_token_invalid", "the ID token was issued by another issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if config.client_id not in audiences:
        raise OidcError("id_token_invalid", "the ID token is not meant for this client")
    # Core 3.1.3.7 items 4-5: with several audiences, azp must be present and be us.
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != config.client_id:
        raise OidcError("id_token_invalid", "the ID token's authorized party is another client")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if not _number(exp) or now > float(exp) + skew:  # type: ignore[arg-type]
        raise OidcError("id_token_expired", "the ID token has expired")
    if not _number(iat) or float(iat) > now + skew:  # type: ignore[arg-type]
        raise OidcError("id_token_invalid", "the ID token is issued in the future")
    if nbf is not None and (not _number(nbf) or float(nbf) > now + skew):  # type: ignore[arg-type]
        raise OidcError("id_token_invalid", "the ID token is not valid yet")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(
            token_nonce.encode("utf-8", "surrogatepass"), nonce.encode()):
        raise OidcError("nonce_mismatch", "the ID token does not answer this login (nonce)")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise OidcError("id_token_invalid", "the ID token has no subject")
    if config.google_hosted_domains and claims.get("hd") not in config.google_hosted_domains:
        raise OidcError("domain_not_allowed", "your Google account is not in a domain allowed "
                        "to sign in here")


def _number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def fetch_userinfo(http: httpx.Client, metadata: ProviderMetadata, access_token: str | None,
                   *, subject: str) -> dict[str, object]:
    """The UserInfo claims, only if their ``sub`` is the ID token's (Core 5.3.2)."""
    request = userinfo_request(http, metadata, access_token)
    return read_userinfo(*send(http, request, what="userinfo"), subject=subject)


def userinfo_request(http: httpx.Client | httpx.AsyncClient, metadata: ProviderMetadata,
                     access_token: str | None) -> httpx.Request:
    """The UserInfo request of :func:`fetch_userinfo`, for ``http`` to send."""
    if metadata.userinfo_endpoint is None or not access_token:
        raise OidcError("idp_bad_response", "userinfo is configured but the provider gave "
                        "no userinfo endpoint or access token")
    return json_request(http, metadata.userinfo_endpoint, what="userinfo",
                        headers={"Authorization": f"Bearer {access_token}"})


def read_userinfo(status: int, raw: bytes, *, subject: str) -> dict[str, object]:
    """The claims of the UserInfo answer, if about ``subject``. Raises OidcError."""
    body = read_json(status, raw, what="userinfo")
    if not isinstance(body, dict):
        raise OidcError("idp_bad_response", "the userinfo response is not a JSON object")
    if body.get("sub") != subject:
        raise OidcError("userinfo_mismatch", "the userinfo response is about another subject")
    return body


def identity_from_claims(claims: Mapping[str, object],
                         userinfo: Mapping[str, object] | None = None) -> ExternalIdentity:
    """One ExternalIdentity: userinfo claims merged under the (signed) ID token's claims,
    token-describing claims dropped, IdP quirks reported as notes, and the claim
    ``auth_context`` made from the ID token's ``acr`` and ``amr`` alone (never userinfo's)."""
    merged = {**(userinfo or {}), **claims}
    notes: list[str] = []
    claim_names = merged.get("_claim_names")
    if isinstance(claim_names, dict) and "groups" in claim_names:
        # Entra ID's groups overage: past 200 groups (150 in SAML) the token carries a pointer
        # to Microsoft Graph instead. We do not call Graph (it needs extra API permissions);
        # the groups claim is treated as absent, which revokes nothing by default.
        notes.append("groups overage: Entra ID sent a Microsoft Graph reference instead of "
                     "the groups; configure the app registration to emit only groups assigned "
                     "to the application, or app roles")
        merged.pop("groups", None)
    if merged.get("hasgroups") is True:
        notes.append("groups overage (hasgroups): Entra ID left the groups out of the token")
    for name in ("_claim_names", "_claim_sources"):
        merged.pop(name, None)
    issuer = str(claims["iss"])
    subject = str(claims["sub"])
    kept = {k: v for k, v in merged.items() if k not in TOKEN_CLAIMS}
    sid = claims.get("sid")  # Front-/Back-Channel Logout: the OP's session, for its logout
    identity = ExternalIdentity(issuer=issuer, subject=subject, claims=kept,
                                notes=tuple(notes),
                                idp_session_id=sid if isinstance(sid, str) and sid else None)
    return with_auth_context(identity, AuthContext.from_id_token(claims))


def check_response_issuer(metadata: ProviderMetadata, iss: str | None) -> None:
    """RFC 9207 section 2.4: an ``iss`` in the authorization response must be the provider's;
    when the provider advertises the parameter, it must be there (defeats IdP mix-up)."""
    if iss is None:
        if metadata.iss_parameter:
            raise OidcError("invalid_response", "the provider's response carries no issuer")
        return
    if iss != metadata.issuer:
        raise OidcError("invalid_response", "the response comes from another issuer")
