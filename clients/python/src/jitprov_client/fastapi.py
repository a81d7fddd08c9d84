"""A FastAPI dependency: the request's Identity, with a role check. Needs FastAPI
(``pip install 'jitprov-client[fastapi]'``); the rest of jitprov_client does not."""

from __future__ import annotations

from collections.abc import Callable

try:
    from fastapi import HTTPException, Request
except ImportError as exc:
    raise ImportError("jitprov_client.fastapi needs FastAPI: "
                      "pip install 'jitprov-client[fastapi]'") from exc

from jitprov_client.verify import HEADER, Identity, IdentityVerifier, InvalidIdentity


def requires_role(*roles: str, verifier: IdentityVerifier,
                  header: str = HEADER) -> Callable[[Request], Identity]:
    """A dependency (``Depends(requires_role("nurse", verifier=v))``): the request's Identity
    if it holds one of ``roles`` (any identity when none given); HTTP 401 without a valid
    token, 403 without the role."""

    def dependency(request: Request) -> Identity:
        try:
            identity = verifier.verify(request.headers.get(header))
        except InvalidIdentity as exc:
            raise HTTPException(401, "unauthenticated") from exc
        if roles and not identity.has_role(*roles):
            raise HTTPException(403, "a required role is missing")
        return identity

    return dependency
