"""Logout in both directions: the RP-initiated logout request (the browser goes to the
provider's ``end_session_endpoint``) and the validation of a back-channel logout token (the
provider tells us server to server that a session ended). Pure functions plus the injected
key cache; what to revoke is the service's business."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from joserfc import jws
from joserfc.errors import JoseError

from jitprov.protocols.oidc.config import OidcConfig
from jitprov.protocols.oidc.errors import OidcError
from jitprov.protocols.oidc.flow import expected_issuer, verify_signed_token
from jitprov.protocols.oidc.provider import ProviderMetadata, Providers

#: Back-Channel Logout 1.0 section 2.4: the member of ``events`` that makes a logout token
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: a logout token is sent when the session ends: one issued longer ago than this is refused
#: (it also bounds how long its ``jti`` must be remembered)
LOGOUT_TOKEN_MAX_AGE = 300  # seconds
#: section 2.4: "explicitly typed" logout tokens; an untyped one (older providers) is accepted
LOGOUT_TOKEN_TYPES = frozenset({"logout+jwt", "application/logout+jwt", "jwt"})
MAX_TOKEN_ID = 256  # characters of a jti we store
MAX_LOGOUT_TOKEN = 16_384  # characters: a logout token is a few hundred
MAX_SESSION_ID = 255  # characters of a sid or sub we look up (the session columns)


@dataclass(frozen=True, slots=True)
class LogoutToken:
    """A verified logout token: whose sessions end (``sid`` and/or ``sub``), its ``jti``
    (single use) and until when (epoch seconds) it could be accepted, so until when the
    ``jti`` must be remembered."""

    sid: str | None
    sub: str | None
    jti: str
    replay_until: float

    def __repr__(self) -> str:  # identifiers of a person's session stay out of logs
        return "LogoutToken(<hidden>)"


def precheck_logout_token(token: str, config: OidcConfig) -> None:
    """What can be refused before anything is fetched from the provider: a compact JWS
    (parsed by joserfc, not verified here) whose algorithm the connection accepts and whose
    ``typ``, if any, is a logout token's. An anonymous post of junk must not make jitprov call
    the provider. Raises OidcError ``logout_token_invalid``; :func:`validate_logout_token`
    still checks everything, signature first."""
    code = "logout_token_invalid"
    if len(token) > MAX_LOGOUT_TOKEN:
        raise OidcError(code, "the logout token is too large")
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError, TypeError, KeyError) as exc:
        raise OidcError(code, "the logout token is not a signed JWT") from exc
    if header.get("alg") not in config.id_token_algs:
        raise OidcError(code, "the logout token is not signed with an algorithm this "
                        "connection accepts")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str)
                            or typ.lower() not in LOGOUT_TOKEN_TYPES):
        raise OidcError(code, "the token is not a logout token (typ)")


def validate_logout_token(token: str, providers: Providers, metadata: ProviderMetadata,
                          config: OidcConfig, *, now: float) -> LogoutToken:
    """Back-Channel Logout 1.0 section 2.6: signature (the provider's JWKS, the connection's
    algorithms), ``typ``, ``iss``, ``aud`` (and ``azp``), ``iat`` within the last
    LOGOUT_TOKEN_MAX_AGE seconds, ``exp`` when present, ``events`` with the back-channel
    logout member, ``sid`` and/or ``sub``, no ``nonce``, a ``jti``. The ``jti``'s single use
    is the caller's (it needs the shared replay cache). Raises OidcError: ``logout_token_invalid``
    or ``logout_token_expired``; the message never quotes the token."""
    code = "logout_token_invalid"
    header, claims = verify_signed_token(token, providers, metadata, config, code=code,
                                         what="logout token")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str)
                            or typ.lower() not in LOGOUT_TOKEN_TYPES):
        raise OidcError(code, "the token is not a logout token (typ)")
    if "nonce" in claims:  # section 2.4: forbidden, so an ID token is never taken for one
        raise OidcError(code, "the logout token carries a nonce (an ID token is not a "
                        "logout token)")
    events = claims.get("events")
    if not isinstance(events, Mapping) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), Mapping):
        raise OidcError(code, "the logout token has no back-channel logout event")
    if claims.get("iss") != expected_issuer(claims, config, code=code):
        raise OidcError(code, "the logout token was issued by another issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if config.client_id not in audiences:
        raise OidcError(code, "the logout token is not meant for this client")
    if "azp" in claims and claims.get("azp") != config.client_id:
        raise OidcError(code, "the logout token's authorized party is another client")
    skew = config.clock_skew_seconds
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _number(iat) or float(iat) > now + skew:  # type: ignore[arg-type]
        raise OidcError(code, "the logout token has no issue time, or one in the future")
    if float(iat) < now - skew - LOGOUT_TOKEN_MAX_AGE:  # type: ignore[arg-type]
        raise OidcError("logout_token_expired", "the logout token was issued too long ago")
    if exp is not None and (not _number(exp) or now > float(exp) + skew):  # type: ignore[arg-type]
        raise OidcError("logout_token_expired", "the logout token has expired")
    sid, sub = _identifier(claims, "sid"), _identifier(claims, "sub")
    if sid is None and sub is None:
        raise OidcError(code, "the logout token names neither a session (sid) nor a "
                        "subject (sub)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_TOKEN_ID:
        raise OidcError(code, "the logout token has no usable jti")
    return LogoutToken(sid=sid, sub=sub, jti=jti,
                       replay_until=float(iat) + LOGOUT_TOKEN_MAX_AGE + 2 * skew)  # type: ignore[arg-type]


def _identifier(claims: Mapping[str, object], name: str) -> str | None:
    """A ``sid`` or ``sub``: absent is None; present, it must be a usable string."""
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SESSION_ID:
        raise OidcError("logout_token_invalid", f"the logout token's {name} is not usable")
    return value


def _number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def build_end_session_url(metadata: ProviderMetadata, *, client_id: str,
                          post_logout_redirect_uri: str, state: str,
                          id_token_hint: str | None) -> str | None:
    """RP-Initiated Logout 1.0 section 2: where to send the browser to end the session at the
    provider (``id_token_hint`` when we hold it, ``client_id`` always, so a provider that
    cannot read the hint still knows the registered ``post_logout_redirect_uri``). None when
    the provider has no ``end_session_endpoint``."""
    if metadata.end_session_endpoint is None:
        return None
    params = {"client_id": client_id, "post_logout_redirect_uri": post_logout_redirect_uri,
              "state": state}
    if id_token_hint:
        params = {"id_token_hint": id_token_hint, **params}
    separator = "&" if "?" in metadata.end_session_endpoint else "?"
    return f"{metadata.end_session_endpoint}{separator}{urlencode(params)}"
