"""The built-in demo IdP (connection kind ``mock``), for ``jitprov dev`` and tests only.

The demo IdP signs a short-lived JWT (HS256, RFC 7519 via joserfc) with the connection's own
random key; the callback verifies signature, issuer, audience, expiry and the login state
before anything reaches ``provision_on_login``. ``jitprov serve`` refuses this kind.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from jitprov.core.errors import InvalidInput
from jitprov.core.identity import ExternalIdentity

ASSERTION_LIFETIME = 120  # seconds between the demo IdP's form and our callback
ALGORITHMS = ["HS256"]


class MockKind:
    name = "mock"
    dev_only = True

    def validate_config(self, config: Mapping[str, object]) -> None:
        if config:
            raise InvalidInput(f"the mock kind takes no configuration, got {sorted(config)}")


def issuer_for(base_url: str, connection: str) -> str:
    return f"{base_url}/dev/idp/{connection}"


def sign_assertion(*, key: str, issuer: str, audience: str, subject: str,
                   claims: Mapping[str, object], state: str, now: float | None = None) -> str:
    """What the demo IdP hands back: a signed JWT carrying the user's claims."""
    issued = int(time.time() if now is None else now)
    payload = {**claims, "iss": issuer, "aud": audience, "sub": subject, "iat": issued,
               "exp": issued + ASSERTION_LIFETIME, "state": state}
    return jwt.encode({"alg": "HS256"}, payload, OctKey.import_key(key), algorithms=ALGORITHMS)


def verify_assertion(token: str, *, key: str, issuer: str, audience: str, state: str,
                     now: float | None = None) -> ExternalIdentity:
    """Verify the demo IdP's JWT and return the identity. Raises InvalidInput."""
    try:
        decoded = jwt.decode(token, OctKey.import_key(key), algorithms=ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            now=int(time.time() if now is None else now), leeway=5,
            iss={"essential": True, "value": issuer}, aud={"essential": True, "value": audience},
            sub={"essential": True}, exp={"essential": True},
            state={"essential": True, "value": state})
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidInput(f"the demo IdP's assertion is not valid: {exc}") from exc
    claims = {k: v for k, v in decoded.claims.items()
              if k not in ("iss", "aud", "iat", "exp", "state")}
    return ExternalIdentity(issuer=issuer, subject=str(decoded.claims["sub"]), claims=claims)
